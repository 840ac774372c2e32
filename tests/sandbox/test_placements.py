"""What every ``Placements`` promises, parametrized by implementation (a fixture
``<name>_placements`` that makes one on fresh storage, and ``reopen`` that makes another on the
same storage, as a restarted manager or a second API process would)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agentcell.sandbox.placements import JsonPlacements, Placements
from agentcell.store import Store
from agentcell.store.placements import Placements as StorePlacements
from tests.conftest import SettingsFactory

IMPLEMENTATIONS = ["json", "store"]
Opener = Callable[[], Placements]


@pytest.fixture
def json_placements(tmp_path: Path) -> Opener:
    return lambda: JsonPlacements(tmp_path / "cells.json")


@pytest.fixture
async def store_placements(make_settings: SettingsFactory) -> AsyncIterator[Opener]:
    async with await Store.from_settings(make_settings()) as store:  # SQLite in the data dir
        yield lambda: StorePlacements(store.engine, node="node-1")


@pytest.fixture(params=IMPLEMENTATIONS)
def reopen(request: pytest.FixtureRequest) -> Opener:
    opener: Opener = request.getfixturevalue(f"{request.param}_placements")
    return opener


async def test_an_owner_has_no_cell_until_one_is_assigned(reopen: Opener) -> None:
    placements = reopen()
    assert await placements.cell_of("alice") is None
    assert await placements.owners() == {}
    await placements.assign("alice", "c1")
    await placements.assign("bob", "c2")
    assert await placements.cell_of("alice") == "c1"
    assert await placements.owners() == {"alice": "c1", "bob": "c2"}


async def test_assign_replaces_and_remove_is_idempotent(reopen: Opener) -> None:
    placements = reopen()
    await placements.assign("alice", "c1")
    await placements.assign("alice", "c3")
    assert await placements.cell_of("alice") == "c3"
    await placements.remove("alice")
    await placements.remove("alice")
    await placements.remove("nobody")
    assert await placements.cell_of("alice") is None


async def test_placements_are_durable_and_owners_a_copy(reopen: Opener) -> None:
    placements = reopen()
    await placements.assign("alice", "c1")
    await placements.assign("bob", "c2")
    await placements.remove("bob")
    owners = await placements.owners()
    owners["mallory"] = "c1"  # a copy: changing it changes nothing
    again = reopen()
    assert await again.owners() == {"alice": "c1"}
