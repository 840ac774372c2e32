"""One turn of a chat session: the agent runs in a task of its own, its events go through a queue
to whoever listens (an SSE stream, or a JSON request that waits for the end).

The task, not the request, owns the run, so that:
- a client that hangs up cancels the task once (plain asyncio cancellation), and the runner's
  cleanup (interrupting the cell's contexts) can still await; a request's own cancel scope would
  cancel every await of that cleanup too;
- the session's lock is held until the run has really ended, and released before the last event
  goes out, so a client may send its next message the moment it reads ``done``;
- a finished turn is kept (``Store.add_turn``) before ``done`` goes out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentcell.agent.events import AgentEvent, Done, Failed, Text
from agentcell.errors import AgentcellError, Conflict
from agentcell.sandbox.service import CellHandle
from agentcell.store import Store
from agentcell.store.models import utcnow

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from agentcell.config import Settings

log = logging.getLogger(__name__)

ModelFactory = Callable[["Settings"], "Model"]
"""What ``app.state.model_factory`` holds when set (tests: a scripted model); unset, each turn
gets ``agent.models.build_model(settings)``, the model ``AGENTCELL_MODEL`` names."""

END = (Done, Failed)
STOPPED = "turn_stopped"  # the code of a turn cancelled before its end


def display(event: AgentEvent) -> dict[str, Any]:
    """An event as the SSE stream sends it and the store keeps it: ``{event, ...payload}``."""
    return {"event": event.event, **event.payload()}


@dataclass
class Turn:
    """A running turn; start it with ``Turns.start``, then read ``events()`` to the end."""

    owner: str
    session_id: str
    prompt: str
    store: Store
    release: Callable[[], None]
    shown: list[dict[str, Any]] = field(default_factory=list)  # text pieces joined
    queue: asyncio.Queue[AgentEvent] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    end: Done | Failed | None = None  # set when the run has ended, before the last event
    stopped: str = ""  # why the run was cancelled
    _cleanup: asyncio.Future[None] | None = None

    def start(self, cell: CellHandle, events: AsyncIterator[AgentEvent]) -> None:
        self.task = asyncio.create_task(self._run(cell, events), name=f"turn {self.session_id}")
        self.task.add_done_callback(self._never_ran)

    def _never_ran(self, _task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never enters ``_run``: end it here."""
        if self.end is None:
            self.end = Failed(STOPPED, f"the turn was stopped: {self.stopped or 'cancelled'}")
            self.release()
            self.queue.put_nowait(self.end)
            self._cleanup = asyncio.ensure_future(self._audit(self.end, 0.0))

    async def refuse(self, exc: BaseException) -> None:
        """The turn could not start (no model, no cell...): release the session, audit why."""
        self.release()
        if isinstance(exc, AgentcellError):
            await self._audit(Failed(exc.code, exc.message, exc.hint), 0.0)

    def cancel(self, why: str = "the client closed the stream") -> None:
        """Stop the run (no-op once it has ended); nothing of it is kept. A listener still
        there gets a ``turn_stopped`` error saying ``why``."""
        if self.task is not None and not self.task.done():
            self.stopped = why
            self.task.cancel()

    async def events(self, heartbeat_s: float) -> AsyncIterator[AgentEvent | None]:
        """The turn's events as they come, ending with Done or Failed; None after each
        ``heartbeat_s`` without one. Leaving early (a client that hung up) stops the turn."""
        try:
            while True:
                try:
                    event = await asyncio.wait_for(self.queue.get(), heartbeat_s)
                except TimeoutError:
                    yield None
                    continue
                yield event
                if isinstance(event, END):
                    return
        finally:
            self.cancel()

    async def result(self) -> Done:
        """Wait for the end: the Done event, or the failure raised as an AgentcellError.
        A caller that is cancelled stops the turn."""
        assert self.task is not None, "start the turn first"
        try:
            await asyncio.wait({self.task})
        finally:
            self.cancel()
        if isinstance(self.end, Done):
            return self.end
        assert isinstance(self.end, Failed), "a turn ends with Done or Failed"
        raise failure(self.end)

    def events_json(self) -> str:
        return json.dumps(self.shown, separators=(",", ":"), default=str)

    def _show(self, event: AgentEvent) -> None:
        last = self.shown[-1] if self.shown else {}
        if isinstance(event, Text) and last.get("event") == "text" and last["agent"] == event.agent:
            last["text"] += event.text
            return
        self.shown.append(display(event))

    async def _run(self, cell: CellHandle, events: AsyncIterator[AgentEvent]) -> None:
        asked_at, started = utcnow(), time.perf_counter()
        end: Done | Failed | None = None
        try:
            async with cell.using(), _closing(events) as stream:
                async for event in stream:
                    if isinstance(event, Done):
                        await self.store.add_turn(
                            self.owner,
                            self.session_id,
                            self.prompt,
                            event.output,
                            self.events_json(),
                            event.messages_json,
                            prompt_at=asked_at,
                        )
                        end = event
                        break
                    if isinstance(event, Failed):
                        end = event
                        break
                    self._show(event)
                    self.queue.put_nowait(event)
            if end is None:
                end = Failed("agent_error", "the agent stopped without an answer")
        except AgentcellError as exc:
            end = Failed(exc.code, exc.message, exc.hint)
        except Exception:
            log.exception("chat turn in session %s failed", self.session_id)
            end = Failed("internal", "the agent failed", "the server log has the details")
        finally:
            if end is None:  # cancelled
                end = Failed(STOPPED, f"the turn was stopped: {self.stopped or 'cancelled'}")
            self.end = end
            self.release()
            await self._audit(end, (time.perf_counter() - started) * 1000)
            self.queue.put_nowait(end)

    async def _audit(self, end: Done | Failed, duration_ms: float) -> None:
        error = f"{end.code}: {end.message}" if isinstance(end, Failed) else ""
        await self.store.record(
            self.owner,
            "chat",
            target=self.session_id,
            detail=f"{error}\n{self.prompt}" if error else self.prompt,
            duration_ms=duration_ms,
            ok=not error,
        )


@asynccontextmanager
async def _closing(events: AsyncIterator[AgentEvent]) -> AsyncIterator[AsyncIterator[AgentEvent]]:
    """Close the runner's generator however the turn ends: that stops its work in the cell."""
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def failure(event: Failed) -> AgentcellError:
    """A Failed event as the error to raise: the status of our error class with that code
    (``model_not_configured``...), else 502, the agent's upstream failed."""
    status = 409 if event.code == STOPPED else _statuses().get(event.code, 502)
    error = AgentcellError(event.message, hint=event.hint or None)
    error.code, error.status_code = event.code, status
    return error


def _statuses() -> dict[str, int]:
    found: dict[str, int] = {}
    todo: list[type[AgentcellError]] = [AgentcellError]
    while todo:
        cls = todo.pop(0)
        if "code" in vars(cls):
            found.setdefault(cls.code, cls.status_code)
        todo.extend(cls.__subclasses__())
    return found


class Turns:
    """The running turns of one server, one at most per session.

    The lock lives in this process: servers sharing one database do not see each other's turns.
    """

    def __init__(self) -> None:
        self._running: dict[str, Turn] = {}

    def claim(self, owner: str, session_id: str, prompt: str, store: Store) -> Turn:
        """A new turn for the session, or Conflict while another one runs there."""
        if session_id in self._running:
            raise Conflict(
                "a turn is already running in this session",
                hint="wait for its done (or error) event, or stop it by closing its stream",
            )
        turn = Turn(owner, session_id, prompt, store, lambda: self._release(session_id, turn))
        self._running[session_id] = turn
        return turn

    def _release(self, session_id: str, turn: Turn) -> None:
        if self._running.get(session_id) is turn:
            del self._running[session_id]

    def get(self, session_id: str) -> Turn | None:
        return self._running.get(session_id)
