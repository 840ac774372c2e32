"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL server (one per test
session, ``tests.postgres``); each test gets a database of its own on it, dropped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from agentcell.store import Store
from agentcell.store.db import sync_engine
from tests.postgres import PostgresServer, database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, nothing migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'agentcell.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with database(server) as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    async with await Store.open(db_url) as s:
        yield s


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    """A plain sync engine on the same database, to read rows as they are stored."""
    engine = sync_engine(db_url)
    yield engine
    engine.dispose()
