"""``CellService`` in this process (``LocalCells``) against a real engine: everything goes by
owner id, and nothing it hands out is a live object (each value survives pickling, as it would
have to cross a network to an agentcell node)."""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import AsyncIterator

import pytest

from agentcell.errors import PathNotFound
from agentcell.executor.protocol import Exit, Output
from agentcell.sandbox.base import CellState
from agentcell.sandbox.local import LocalCells
from agentcell.sandbox.manager import CellManager
from agentcell.sandbox.service import CellHandle, CellService
from tests.conftest import ManagerFactory
from tests.waiting import until

pytestmark = pytest.mark.docker


@pytest.fixture
async def cells(make_manager: ManagerFactory) -> AsyncIterator[LocalCells]:
    async with make_manager(pool_size=1) as manager:
        yield LocalCells(manager)


def plain(value: object) -> object:
    """The value, after a round trip through pickle: it holds nothing that is only here."""
    return pickle.loads(pickle.dumps(value))


async def test_status_ensure_restart_remove(cells: CellService) -> None:
    assert await cells.status("alice") is None
    ensured = await cells.ensure("alice")
    assert ensured.owner == "alice"
    assert ensured.state is CellState.RUNNING
    assert plain(ensured) == ensured
    assert await cells.status("alice") == ensured  # no usage read unless asked for
    status = await cells.status("alice", usage=True)
    assert status is not None
    assert dataclasses.replace(status, memory_bytes=None, storage_bytes=None) == ensured
    assert status.memory_bytes is not None
    assert status.memory_bytes > 1 << 20
    restarted = await cells.restart("alice")
    assert restarted.cell_id == ensured.cell_id  # the same workspace
    assert restarted.container_id != ensured.container_id
    await cells.remove("alice")
    await cells.remove("alice")  # idempotent
    removed = await cells.status("alice")
    assert removed is not None
    assert removed.state is CellState.REMOVED


async def test_code_runs_by_owner_and_streams(cells: CellService) -> None:
    assert (await cells.exec("bob", "x = 41")).exit_code == 0
    result = await cells.exec("bob", "print(x + 1)")
    assert plain(result) == result
    assert result.stdout == "42\n"
    events = [e async for e in cells.stream("bob", "for i in range(3): print(i)")]
    assert "".join(e.data for e in events if isinstance(e, Output)) == "0\n1\n2\n"
    assert isinstance(events[-1], Exit)
    assert plain(events) == events
    assert (await cells.exec("carol", "print('x' in globals())")).stdout == "False\n"


async def test_files_by_owner(cells: CellService) -> None:
    assert await cells.write("dan", "a/b.txt", b"bee") == 3
    assert await cells.read_bytes("dan", "a/b.txt") == b"bee"
    assert b"".join([c async for c in cells.read("dan", "a/b.txt")]) == b"bee"
    zipped = b"".join([c async for c in cells.zip("dan", "a")])
    assert zipped.startswith(b"PK")
    entries = await cells.list_files("dan", "a")
    assert [e.name for e in entries] == ["b.txt"]
    assert plain(entries) == entries
    page = await cells.list_page("dan", ".", limit=1)
    assert [e.name for e in page.entries] == ["a"]
    await cells.delete("dan", "a", recursive=True)
    with pytest.raises(PathNotFound):
        await cells.read_bytes("dan", "a/b.txt")
    assert await cells.list_files("erin") == []  # another owner's workspace


async def test_using_holds_the_cell_busy(cells: LocalCells) -> None:
    manager: CellManager = cells.manager
    async with cells.using("fay"):
        report = await manager.reap(now=time.time() + manager.settings.idle_remove_s + 1)
        assert report.paused == report.stopped == report.removed == 0
        status = await cells.status("fay")
        assert status is not None
        assert status.active == 1
    status = await cells.status("fay")
    assert status is not None
    assert status.active == 0


async def test_a_handle_binds_the_owner(cells: CellService) -> None:
    handle = CellHandle(cells, "gus")
    await handle.files.write("note.txt", b"hi")
    assert (await handle.exec("print(open('note.txt').read())")).stdout == "hi\n"
    assert [e.name for e in await handle.files.list()] == ["note.txt"]
    assert await handle.processes() == []
    await handle.interrupt()  # nothing runs: no-op


async def test_the_operators_view(cells: CellService) -> None:
    await cells.ensure("hal")

    async def pooled() -> bool:  # the pool refills after hal took its cell
        return "" in {c.owner for c in await cells.overview()}

    await until("the pool shows in the overview", pooled)
    overview = await cells.overview()
    assert "hal" in {c.owner for c in overview}
    assert plain(overview) == overview
    profile = await cells.profile()
    assert profile.image
    assert plain(profile) == profile
    health = await cells.health()
    assert health.backend
    assert (await cells.counters()).reaper_errors == 0
    assert (await cells.reap()).died == 0
