"""Chat turns: one at a time per session, across every server that shares the database.

A turn takes its session's lock in the store (a lease, ``Store.claim_turn``) before anything
else, so a second turn is refused (409) whichever server it is sent to. The agent's ``Turn``
runs it, in the one task it owns; here its end is kept (``Store.add_turn``) before ``done``
goes out, the lock is released before the last event goes out (a client may send its next
message the moment it reads ``done``), and the turn is audited. While turns run, one task per
server renews their leases; a server that dies stops renewing, and its leases run out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from agentcell.agent.events import AgentEvent, Done, Failed, Text
from agentcell.agent.models import build_model
from agentcell.agent.runner import STOPPED, Turn
from agentcell.agent.tools import Servers
from agentcell.config import Settings
from agentcell.errors import (
    AgentcellError,
    Conflict,
    InvalidRequest,
    ModelNotConfigured,
    error_classes,
)
from agentcell.sandbox.service import CellHandle, CellService
from agentcell.services.audit import Audit
from agentcell.store import Store
from agentcell.store.models import utcnow

if TYPE_CHECKING:
    from pydantic_ai.models import Model

log = logging.getLogger(__name__)

ModelFactory = Callable[[Settings], "Model"]
"""Makes each turn's model: ``agent.models.build_model`` (the model ``AGENTCELL_MODEL``
names), or what ``app.state.model_factory`` holds when set (tests: a scripted model)."""

LEASE_S = 30.0  # a turn lock lasts this long unless renewed: how long a dead server holds one
RENEW_S = 10.0  # how often a server renews its turns' leases
LOST = "its session was deleted, or the database was out of reach for too long"


def display(event: AgentEvent) -> dict[str, Any]:
    """An event as the SSE stream sends it and the store keeps it: ``{event, ...payload}``."""
    return {"event": event.event, **event.payload()}


def failure(event: Failed) -> AgentcellError:
    """A Failed event as the error to raise: the status of our error class with that code
    (``model_not_configured``...), else 502, the agent's upstream failed."""
    known = error_classes().get(event.code)
    status = 409 if event.code == STOPPED else known.status_code if known else 502
    error = AgentcellError(event.message, hint=event.hint or None)
    error.code, error.status_code = event.code, status
    return error


class ChatTurn:
    """A running chat turn: read ``events()`` to the end, or ``await result()``."""

    def __init__(self, turns: Turns, owner: str, session_id: str, prompt: str) -> None:
        self.owner, self.session_id, self.prompt = owner, session_id, prompt
        self.holder = "t_" + secrets.token_hex(8)  # this turn's own token in the turn lock
        self.shown: list[dict[str, Any]] = []  # its events as kept and answered: text joined
        self._turns = turns
        self._run: Turn | None = None
        self._asked_at, self._started = utcnow(), time.perf_counter()

    def start(self, cell: CellHandle, history: list[bytes], model: Model) -> None:
        self._run = Turn(
            settings=self._turns.settings,
            cell=cell,
            session_id=self.session_id,
            prompt=self.prompt,
            history=history,
            model=model,
            on_event=self._show,
            on_end=self._end,
            servers=self._turns.servers(self.owner) if self._turns.servers else None,
        )
        self._run.start()

    def stop(self, why: str) -> None:
        if self._run is not None:
            self._run.stop(why)

    def events(self, heartbeat_s: float) -> AsyncGenerator[AgentEvent | None, None]:
        """The turn's events, ending with Done (the turn is kept by then) or Failed; None after
        each ``heartbeat_s`` without one. Leaving early (or closing it) stops the turn."""
        assert self._run is not None, "start the turn first"
        return self._run.events(heartbeat_s)

    async def result(self) -> Done:
        """Wait for the end: Done, or the failure raised. A caller cancelled stops the turn."""
        assert self._run is not None, "start the turn first"
        end = await self._run.ended()
        if isinstance(end, Failed):
            raise failure(end)
        return end

    async def ended(self) -> None:
        if self._run is not None:
            await self._run.ended()

    def _show(self, event: AgentEvent) -> None:
        last = self.shown[-1] if self.shown else {}
        if isinstance(event, Text) and last.get("event") == "text" and last["agent"] == event.agent:
            last["text"] += event.text
            return
        self.shown.append(display(event))

    async def _end(self, end: Done | Failed) -> Done | Failed:
        """In the turn's task, once it has ended: keep it, let the session go, audit it."""
        try:
            if isinstance(end, Done):
                end = await self._keep(end)
        finally:
            await self._turns.release(self)
        await self._turns.audit_end(self, end, (time.perf_counter() - self._started) * 1000)
        return end

    async def _keep(self, done: Done) -> Done | Failed:
        events = json.dumps(self.shown, separators=(",", ":"), default=str)
        try:
            await self._turns.store.add_turn(
                self.owner,
                self.session_id,
                self.prompt,
                done.output,
                events,
                done.messages_json,
                prompt_at=self._asked_at,
            )
        except AgentcellError as exc:  # the session was deleted, the database failed
            return Failed(exc.code, exc.message, exc.hint)
        except Exception:
            log.exception("cannot keep the turn in session %s", self.session_id)
            return Failed("internal", "the turn could not be kept", "the server log has details")
        return done


class Turns:
    """This server's chat turns."""

    def __init__(
        self,
        store: Store,
        cells: CellService,
        settings: Settings,
        audit: Audit,
        model_factory: ModelFactory | None = None,
        servers: Callable[[str], Servers] | None = None,
    ) -> None:
        self.store, self.settings = store, settings
        self._cells, self._audit = cells, audit
        self.servers = servers  # the coder's servers, as jobs of the turn's owner
        self._model_factory = model_factory or build_model
        self._running: dict[str, ChatTurn] = {}  # by session id
        self._keeper: asyncio.Task[None] | None = None

    def check_model(self) -> None:
        """Say once, at start, when chat cannot work: no model is configured. (Each chat request
        then answers 503 with the same message, and is not logged again.)"""
        try:
            self._model_factory(self.settings)
        except ModelNotConfigured as exc:
            log.warning("chat is off: %s; %s", exc.message, exc.hint)
        except AgentcellError as exc:
            log.warning("chat will fail: %s; %s", exc.message, exc.hint)

    def model(self) -> Model:
        """A new turn's model; ModelNotConfigured (503) when there is none."""
        return self._model_factory(self.settings)

    async def start(self, owner: str, session_id: str, prompt: str) -> ChatTurn:
        """Start a turn in the owner's session: NotFound for a session that is not theirs,
        Conflict while another turn runs in it (on any server)."""
        if not prompt.strip():
            raise InvalidRequest("the message is empty", hint="send some text to ask the agent")
        turn = ChatTurn(self, owner, session_id, prompt)
        if not await self.store.claim_turn(owner, session_id, turn.holder, LEASE_S):
            raise Conflict(
                "a turn is already running in this session",
                hint="wait for its done (or error) event, or stop it by closing its stream",
            )
        self._running[session_id] = turn
        try:
            model = self._model_factory(self.settings)  # none configured: a 503 that says so
            history = await self.store.history(owner, session_id)
            await self._cells.ensure(owner)
            cell = CellHandle(self._cells, owner)
        except BaseException as exc:
            await self.release(turn)
            if isinstance(exc, AgentcellError):
                await self.audit_end(turn, Failed(exc.code, exc.message, exc.hint), 0.0)
            raise
        turn.start(cell, history, model)
        self._keep_leases()
        return turn

    def stop(self, session_id: str, why: str) -> None:
        """Stop the session's turn, if one runs here."""
        running = self._running.get(session_id)
        if running is not None:
            running.stop(why)

    async def release(self, turn: ChatTurn) -> None:
        if self._running.get(turn.session_id) is turn:
            del self._running[turn.session_id]
        try:
            await self.store.release_turn(turn.session_id, turn.holder)
        except AgentcellError as exc:  # its lease runs out by itself
            log.warning("cannot release the turn lock of %s: %s", turn.session_id, exc)

    async def audit_end(self, turn: ChatTurn, end: Done | Failed, duration_ms: float) -> None:
        error = f"{end.code}: {end.message}" if isinstance(end, Failed) else ""
        await self._audit.record(
            turn.owner,
            "chat",
            target=turn.session_id,
            detail=f"{error}\n{turn.prompt}" if error else turn.prompt,
            duration_ms=duration_ms,
            ok=not error,
        )

    def _keep_leases(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._renew_leases(), name="turn leases")

    async def _renew_leases(self) -> None:
        """Renew the leases of this server's turns while any run; stop a turn that lost its."""
        while self._running:
            await asyncio.sleep(RENEW_S)
            running = list(self._running.values())
            try:
                held = await self.store.renew_turns([t.holder for t in running], LEASE_S)
            except Exception:  # the next round retries; a lease outlives a few failed ones
                log.exception("cannot renew the leases of %d turns", len(running))
                continue
            for turn in running:
                if turn.holder not in held:
                    turn.stop(f"the turn lost its lock: {LOST}")

    async def close(self) -> None:
        """Stop the turns still running and wait for their ends (their locks are released)."""
        running = list(self._running.values())
        for turn in running:
            turn.stop("the server is stopping")
        await asyncio.gather(*(turn.ended() for turn in running))
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
