"""Turn locks as leases (``services.turns``), through a live server with short leases: a long
turn keeps its lock by renewing it, and a turn whose lock is lost elsewhere (another server
deleted its session) stops."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agentcell.client import SSEParser
from agentcell.services import turns as turns_service
from agentcell.store import Store, database_url
from agentcell.store.db import sync_engine
from agentcell.store.models import TurnLock
from tests.conftest import Live
from tests.scripted import Scripted, echo, prompts
from tests.waiting import wait_until

pytestmark = pytest.mark.docker

LEASE_S = 1.0
SSE = {"Accept": "text/event-stream"}
T = TypeVar("T")


@pytest.fixture(autouse=True)
def short_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(turns_service, "LEASE_S", LEASE_S)
    monkeypatch.setattr(turns_service, "RENEW_S", 0.1)


@pytest.fixture
def gate(scripted: Scripted) -> Iterator[threading.Event]:
    """The model answers "slow" once the gate opens (it is opened at the end in any case)."""
    opened = threading.Event()

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        while prompts(messages)[-1] == "slow" and not opened.is_set():
            await asyncio.sleep(0.02)
        return echo(messages, info)

    scripted.script = slow
    yield opened
    opened.set()


def elsewhere(live: Live, work: Callable[[Store], Awaitable[T]]) -> T:
    """``work`` done on the server's database through a store of its own, as another server
    sharing the database would."""

    async def run() -> T:
        async with await Store.open(database_url(live.settings)) as store:
            return await work(store)

    return asyncio.run(run())


def lock_expiry(live: Live) -> datetime | None:
    engine = sync_engine(database_url(live.settings))
    try:
        with Session(engine) as session:
            return session.scalar(select(TurnLock.expires_at))
    finally:
        engine.dispose()


def locks(live: Live) -> int:
    engine = sync_engine(database_url(live.settings))
    try:
        with Session(engine) as session:
            return int(session.scalar(select(func.count()).select_from(TurnLock)) or 0)
    finally:
        engine.dispose()


def user(live: Live) -> httpx.Client:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    made = httpx.post(f"{live.url}/v1/users", json={"name": "alice"}, headers=admin, timeout=60)
    key = made.json()["api_key"]
    return httpx.Client(base_url=live.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def events(response: httpx.Response) -> list[tuple[str, dict[str, str]]]:
    parser = SSEParser()
    found = [parser.feed(line) for line in response.iter_lines()]
    return [(e.event, json.loads(e.data)) for e in found if e]


def test_a_long_turn_renews_its_lease(
    chat_server: Live, scripted: Scripted, gate: threading.Event
) -> None:
    with user(chat_server) as http:
        owner = http.get("/v1/me").json()["id"]
        session = http.post("/v1/sessions").json()["id"]
        path = f"/v1/sessions/{session}/messages"
        with http.stream("POST", path, json={"content": "slow"}, headers=SSE) as turn:
            wait_until("the turn asks the model", lambda: bool(scripted.seen))
            first = lock_expiry(chat_server)
            assert first is not None
            later = first + timedelta(seconds=2 * LEASE_S)
            wait_until(  # its first lease is over by then: only renewals hold the lock
                "the lease is renewed past its first term",
                lambda: (lock_expiry(chat_server) or first) > later,
            )
            claimed = elsewhere(
                chat_server, lambda store: store.claim_turn(owner, session, "t_other", LEASE_S)
            )
            assert claimed is False
            gate.set()
            assert [name for name, _ in events(turn)][-1] == "done"
        assert locks(chat_server) == 0  # released at its end


def test_a_turn_that_loses_its_lock_stops(
    chat_server: Live, scripted: Scripted, gate: threading.Event
) -> None:
    """Another server deleted the session, and the lock went with it: the turn stops (this
    server learns it when it next renews), and the stream says why."""
    assert gate
    with user(chat_server) as http:
        owner = http.get("/v1/me").json()["id"]
        session = http.post("/v1/sessions").json()["id"]
        path = f"/v1/sessions/{session}/messages"
        with http.stream("POST", path, json={"content": "slow"}, headers=SSE) as turn:
            wait_until("the turn asks the model", lambda: bool(scripted.seen))
            assert elsewhere(chat_server, lambda store: store.delete_session(owner, session))
            [(name, error)] = events(turn)
        assert name == "error"
        assert error["code"] == "turn_stopped"
        assert "lost its lock" in error["message"]
        [chat] = [e for e in http.get("/v1/audit").json()["events"] if e["action"] == "chat"]
        assert chat["ok"] is False
