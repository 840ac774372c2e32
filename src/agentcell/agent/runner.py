"""One turn of a chat session: the coordinator (and the agents it delegates to) run against the
user's cell, and the turn is reported as one ordered stream of events that ends with exactly one
``Done`` or ``Failed``.

``Turn`` is the one pipeline for a turn, whoever asked for it (the services' chat turns, or
``run_turn`` for a plain stream of events). The turn owns the task that runs it, not whoever
reads its events, so that:
- stopping it (``stop()``, or a reader that leaves early) cancels that task once, and its
  clean-up (interrupting the session's contexts, so nothing keeps running in the cell) can
  still await; a reader's own cancel scope would cancel every await of that clean-up too;
- the end hook (``on_end``: keep the turn, release the session, audit) runs in that task once
  the run has really ended, before the last event goes out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing

from pydantic import ValidationError
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from pydantic_ai.models import Model
from pydantic_ai.tool_manager import ToolManager
from pydantic_ai.usage import RunUsage

from agentcell.agent.agents import COORDINATOR, limits_of, run_agent
from agentcell.agent.events import AgentEvent, Done, Failed, Usage
from agentcell.agent.failures import failed
from agentcell.agent.memory import load_memory
from agentcell.agent.models import build_model
from agentcell.agent.tools import AgentDeps, Servers
from agentcell.config import Settings
from agentcell.errors import AgentcellError
from agentcell.sandbox.audit import started_by
from agentcell.sandbox.service import CellHandle

log = logging.getLogger(__name__)

INTERRUPT_TIMEOUT_S = 5.0
STOPPED = "turn_stopped"  # the code of a turn stopped before its end
END = (Done, Failed)

EventHook = Callable[[AgentEvent], None]
EndHook = Callable[[Done | Failed], Awaitable[Done | Failed]]


class Turn:
    """One turn, run in a task of its own: ``start()`` it, then read ``events()`` to the end or
    ``await ended()``. ``history`` holds the ``messages_json`` of the session's earlier turns
    (``Done.messages_json``), oldest first; ``model`` replaces the configured one.

    ``on_event`` sees each event as it is sent; ``on_end`` gets the last one (Done or Failed)
    and returns what to send instead (a turn that cannot be kept fails)."""

    def __init__(
        self,
        *,
        settings: Settings,
        cell: CellHandle,
        session_id: str,
        prompt: str,
        history: Sequence[bytes],
        model: Model | None = None,
        on_event: EventHook | None = None,
        on_end: EndHook | None = None,
        servers: Servers | None = None,
    ) -> None:
        self.settings, self.cell, self.session_id, self.prompt = settings, cell, session_id, prompt
        self._servers = servers
        self._history, self._model = history, model
        self._on_event, self._on_end = on_event, on_end
        self._queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._deps: AgentDeps | None = None
        self._began = False  # the task has taken its first step
        self._ending = False  # the run is over and the end hook runs: nothing stops it now
        self.stopped = ""  # why the turn was stopped, once it was
        self.end: Done | Failed | None = None

    def start(self) -> None:
        assert self._task is None, "a turn starts once"
        self._task = asyncio.create_task(self._run(), name=f"turn s-{self.session_id}")

    def stop(self, why: str = "the client closed the stream") -> None:
        """Stop the turn: the agent run is cancelled and the session's contexts interrupted;
        it ends with a ``turn_stopped`` Failed that says ``why``. No-op once it has ended (or
        its end hook runs), or when it was stopped already."""
        if self._task is None or self._ending or self.stopped:
            return
        self.stopped = why
        if self._began:  # else its first step sees ``stopped``: a task cancelled before its
            self._task.cancel()  # first step would never run its clean-up or its end hook

    async def events(
        self, heartbeat_s: float | None = None
    ) -> AsyncGenerator[AgentEvent | None, None]:
        """The turn's events as they come, ending with Done or Failed; None after each
        ``heartbeat_s`` without one. Leaving early (a client that hung up) stops the turn."""
        try:
            while True:
                try:
                    event = await asyncio.wait_for(self._queue.get(), heartbeat_s)
                except TimeoutError:
                    yield None
                    continue
                yield event
                if isinstance(event, END):
                    return
        finally:
            self.stop()

    async def ended(self) -> Done | Failed:
        """Wait for the end: its clean-up and end hook are done by then. A caller that is
        cancelled stops the turn."""
        assert self._task is not None, "start the turn first"
        try:
            await asyncio.wait({self._task})
        finally:
            self.stop()
        assert self.end is not None, "a turn ends with Done or Failed"
        return self.end

    def _emit(self, event: AgentEvent) -> None:
        if self.stopped:  # once stopped, only the end goes out
            return
        if self._on_event is not None:
            self._on_event(event)
        self._queue.put_nowait(event)

    async def _run(self) -> None:
        self._began = True
        started_by.set(f"agent:{self.session_id}")  # this task's execs are audited as the agent's
        end = self._stopped() if self.stopped else await self._drive()
        self._ending = True
        if self._on_end is not None:
            end = await self._finish(end)
        self.end = end
        self._queue.put_nowait(end)

    def _stopped(self) -> Failed:
        return Failed(STOPPED, f"the turn was stopped: {self.stopped}")

    async def _drive(self) -> Done | Failed:
        """The agent's run to its end; stopped, what still runs in the cell is interrupted."""
        try:
            return await self._agent()
        except asyncio.CancelledError:
            self.stopped = self.stopped or "cancelled"
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: the clean-up below may await (and time out)
            await self._interrupt()
            return self._stopped()

    async def _agent(self) -> Done | Failed:
        try:
            model = self._model or build_model(self.settings)
            messages = load_history(self._history)
        except AgentcellError as exc:
            return failed(exc, self.settings, None)
        limits = limits_of(self.settings)
        self._deps = deps = AgentDeps(
            self.cell, self.settings, self.session_id, self._emit, model, limits
        )
        deps.servers = self._servers
        try:
            async with self.cell.using():  # busy all turn long: not paused while the model thinks
                deps.memory = await load_memory(self.cell, self.settings.agent_memory_max_bytes)
                return await self._coordinate(deps, messages)
        except AgentcellError as exc:  # the cell could not be woken, or had died since
            return failed(exc, self.settings, model)

    async def _coordinate(self, deps: AgentDeps, history: list[ModelMessage]) -> Done | Failed:
        try:
            with ToolManager.parallel_execution_mode("sequential"):  # one cell: one thing at a time
                result = await run_agent(COORDINATOR, deps, self.prompt, message_history=history)
        except Exception as exc:  # every failure ends the turn with one Failed event
            return failed(exc, self.settings, deps.model)
        return Done(result.output, usage_of(result.usage), result.new_messages_json())

    async def _interrupt(self) -> None:
        """Interrupt whatever still runs in the session's contexts."""
        if self._deps is None:
            return
        for context in (self._deps.python_context, self._deps.browser_context):
            try:
                async with asyncio.timeout(INTERRUPT_TIMEOUT_S):
                    await self.cell.interrupt(context)
            except (AgentcellError, TimeoutError) as exc:
                log.warning("cannot interrupt %s (session %s): %s", context, self.session_id, exc)

    async def _finish(self, end: Done | Failed) -> Done | Failed:
        assert self._on_end is not None
        try:
            return await self._on_end(end)
        except Exception:  # listeners still get an end
            log.exception("the end of the turn in session %s failed", self.session_id)
            return Failed("internal", "the turn could not be kept", "the server log has details")


async def run_turn(
    *,
    settings: Settings,
    cell: CellHandle,
    session_id: str,
    prompt: str,
    history: Sequence[bytes],
    model: Model | None = None,
) -> AsyncIterator[AgentEvent]:
    """Run one turn and yield its events (see ``Turn``). Closing the stream (``aclose()``, or
    cancelling the task that reads it) stops the turn, and returns once the code it ran in the
    cell has been interrupted."""
    turn = Turn(
        settings=settings,
        cell=cell,
        session_id=session_id,
        prompt=prompt,
        history=history,
        model=model,
    )
    turn.start()
    try:
        async with aclosing(turn.events()) as events:
            async for event in events:
                if event is not None:
                    yield event
    finally:
        turn.stop()
        await turn.ended()


def load_history(blobs: Sequence[bytes]) -> list[ModelMessage]:
    """The model messages of earlier turns (each blob is one turn's ``messages_json``)."""
    messages: list[ModelMessage] = []
    for number, blob in enumerate(blobs, 1):
        try:
            messages += ModelMessagesTypeAdapter.validate_json(blob)
        except ValidationError as exc:
            raise AgentcellError(
                f"turn {number} of this session's history cannot be read: "
                f"{exc.error_count()} errors, first: {exc.errors()[0]['msg']}",
                hint="start a new session",
            ) from exc
    return messages


def usage_of(usage: RunUsage) -> Usage:
    return Usage(usage.requests, usage.input_tokens, usage.output_tokens, usage.tool_calls)
