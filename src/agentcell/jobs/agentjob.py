"""An agent job: the coordinator's turn run on the server (the model key stays here), with the
turn's limits, and its events kept as the job's log in the cell: readable text as they come
(an ``external`` job of the executor, so it is followed like an exec job's), and the whole
event stream as ``events.jsonl`` (plus the answer as ``answer.md``) in the job's output folder
at the end."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentcell.agent.events import AgentEvent, AgentStep, Done, Failed, Text, ToolCall, ToolResult
from agentcell.agent.runner import Turn
from agentcell.config import Settings
from agentcell.errors import AgentcellError
from agentcell.executor.protocol import JobStart
from agentcell.jobs.outcome import Outcome
from agentcell.sandbox.service import CellHandle, CellService
from agentcell.schemas import JobState

if TYPE_CHECKING:
    from pydantic_ai.models import Model

log = logging.getLogger(__name__)

SHOWN_CHARS = 2000  # of a tool's arguments or result in the readable log
FLUSH_S = 0.05  # the log is written in batches at most this far apart
LOG_SLACK_S = 120.0


def readable(event: AgentEvent, last_agent: str) -> str:
    """One event as lines of the log a person reads."""
    if isinstance(event, Text):
        return event.text if event.agent == last_agent else f"\n[{event.agent}] {event.text}"
    if isinstance(event, ToolCall):
        args = json.dumps(event.args, ensure_ascii=False)[:SHOWN_CHARS]
        return f"\n[{event.agent}] → {event.tool} {args}\n"
    if isinstance(event, ToolResult):
        mark = "←" if event.ok else "✗"
        return f"[{event.agent}] {mark} {event.tool}: {event.content[:SHOWN_CHARS]}\n"
    if isinstance(event, AgentStep):
        if event.action == "start":
            return f"\n[coordinator → {event.agent}] {event.task}\n"
        return f"[{event.agent} done{'' if event.ok else ', failed'}]\n"
    if isinstance(event, Done):
        u = event.usage
        return (
            f"\n\n[done] {u.requests} model requests, {u.tool_calls} tool calls, "
            f"{u.input_tokens} + {u.output_tokens} tokens\n"
        )
    if isinstance(event, Failed):
        return f"\n\n[error] {event.code}: {event.message}" + (
            f" ({event.hint})\n" if event.hint else "\n"
        )
    return ""


class AgentJob:
    """Runs one agent job to its end; ``stop(why)`` ends it early."""

    def __init__(
        self,
        cells: CellService,
        settings: Settings,
        owner: str,
        job_id: str,
        prompt: str,
        output_dir: str,
        model: Model,
    ) -> None:
        self.cells, self.owner, self.job_id = cells, owner, job_id
        self.output_dir = output_dir
        self.events: list[dict[str, Any]] = []
        self._pending: list[str] = []
        self._wrote = asyncio.Event()
        self._agent = "coordinator"
        self._stopped_as: JobState = "cancelled"
        self._turn = Turn(
            settings=settings,
            cell=CellHandle(cells, owner),
            session_id=job_id,
            prompt=prompt,
            history=[],
            model=model,
            on_event=self._event,
        )

    def stop(self, why: str, state: JobState = "cancelled") -> None:
        """End the job early; it ends in ``state`` with ``why`` as its reason."""
        if not self._turn.stopped:
            self._stopped_as = state
        self._turn.stop(why)

    async def run(self, timeout_s: float, opened: Callable[[], None]) -> Outcome:
        """Open the job's log in the cell, run the turn, keep its events. The caller writes the
        job's state in the store before ``finish`` ends the log (a follower that sees the log end
        then finds the final state)."""
        # The cell ends the log by itself a while after the job's timeout, should we never.
        log = JobStart(id=self.job_id, external=True, timeout_s=timeout_s + LOG_SLACK_S)
        await self.cells.start_job(self.owner, log)
        opened()  # its log can be followed now
        writer = asyncio.create_task(self._write_log())
        self._turn.start()
        try:
            async with asyncio.timeout(timeout_s):
                end = await asyncio.shield(self._turn.ended())
        except TimeoutError:
            self._turn.stop(f"it ran longer than its timeout of {timeout_s:g} s")
            end = await self._turn.ended()
            timed_out = True
        else:
            timed_out = False
        self._event(end)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await self._flush()
        await self._keep(end)
        if timed_out:
            return Outcome("timed_out", f"it ran longer than its timeout of {timeout_s:g} s", 1)
        if isinstance(end, Done):
            return Outcome("succeeded", "", 0)
        if self._turn.stopped:
            return Outcome(self._stopped_as, self._turn.stopped, 1)
        return Outcome("failed", f"{end.code}: {end.message}", 1)

    async def finish(self, exit_code: int) -> None:
        try:
            await self.cells.end_job(self.owner, self.job_id, exit_code)
        except AgentcellError as exc:
            log.warning("cannot end the log of agent job %s: %s", self.job_id, exc)

    def _event(self, event: AgentEvent) -> None:
        if self.events and self.events[-1].get("event") == "done":
            return  # the end is kept once
        self.events.append({"event": event.event, **event.payload()})
        self._pending.append(readable(event, self._agent))
        if isinstance(event, Text | ToolCall | ToolResult):
            self._agent = event.agent
        elif isinstance(event, AgentStep):
            self._agent = event.agent if event.action == "start" else "coordinator"
        self._wrote.set()

    async def _write_log(self) -> None:
        while True:
            await self._wrote.wait()
            self._wrote.clear()
            await self._flush()
            await asyncio.sleep(FLUSH_S)

    async def _flush(self) -> None:
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        try:
            await self.cells.append_job_log(self.owner, self.job_id, text)
        except AgentcellError as exc:  # the turn goes on; its events are still kept at the end
            log.warning("cannot write the log of agent job %s: %s", self.job_id, exc)

    async def _keep(self, end: Done | Failed) -> None:
        lines = "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in self.events)
        try:
            await self.cells.write(self.owner, f"{self.output_dir}/events.jsonl", lines.encode())
            if isinstance(end, Done):
                await self.cells.write(
                    self.owner, f"{self.output_dir}/answer.md", end.output.encode()
                )
        except AgentcellError as exc:
            log.warning("cannot keep the events of agent job %s: %s", self.job_id, exc)
