"""Jobs through ``CellService`` (``LocalCells``) on a real cell: started, waited for and read by
owner id, and a wait in flight keeps the reaper from pausing the cell."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest

from agentcell.executor.protocol import JobStart
from agentcell.sandbox.base import CellState
from agentcell.sandbox.local import LocalCells
from tests.conftest import ManagerFactory
from tests.waiting import until

pytestmark = pytest.mark.docker

HELD_S = 1.0  # how long the job holds: five times the idle time after which a cell is paused
CODE = "echo hi; while [ ! -e go ]; do sleep 0.01; done; echo bye; exit 2"


async def test_a_job_runs_and_its_wait_keeps_the_cell_from_pausing(
    make_manager: ManagerFactory,
) -> None:
    async with make_manager(idle_pause_s=HELD_S / 5, reap_interval_s=0.05) as manager:
        cells = LocalCells(manager)
        started = await cells.start_job("alice", JobStart("j_1", CODE))
        assert started.state == "running"
        waiter = asyncio.ensure_future(cells.wait_job("alice", "j_1"))
        try:
            await until("the wait is in flight", lambda: manager.cells()[0].active == 1)
            deadline = time.monotonic() + HELD_S
            while time.monotonic() < deadline:  # the reaper goes round every 50 ms meanwhile
                status = await cells.status("alice")
                assert status is not None
                assert (status.state, status.active) == (CellState.RUNNING, 1)
                await asyncio.sleep(0.05)
            await cells.write("alice", "go", b"")
            info = await waiter
        finally:
            waiter.cancel()
        assert (info.state, info.exit_code) == ("exited", 2)
        assert pickle.loads(pickle.dumps(info)) == info  # a plain value
        log = b"".join([c async for c in cells.job_log("alice", "j_1", follow=True)])
        assert log == b"hi\nbye\n"

        async def paused() -> bool:
            status = await cells.status("alice")
            return status is not None and status.state is CellState.PAUSED

        await until("the idle cell is paused, once nothing is in flight", paused)
        assert await cells.jobs("alice") == [info]  # woken to answer
        assert await cells.job_status("alice", "j_1") == info
        await cells.forget_job("alice", "j_1")
        assert await cells.jobs("alice") == []
