"""Egress through ``CellService`` (``LocalCells``): a program in the owner's cell connects to the
forwarder and the holder of ``egress(owner)`` gets the connection; holding it does not keep the
cell busy, and a paused cell's listen is silent, not broken."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from agentcell.errors import ExecutorUnreachable
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import EGRESS_PORT
from agentcell.sandbox.base import CellState
from agentcell.sandbox.local import LocalCells
from tests.conftest import ManagerFactory

pytestmark = pytest.mark.docker

HELLO = f"""
import socket
s = socket.create_connection(("127.0.0.1", {EGRESS_PORT}), timeout=30)
s.sendall(b"hello")
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"""


async def shout(duplex: Duplex) -> None:
    try:
        data = b""
        while chunk := await duplex.recv():
            data += chunk
        await duplex.send(data.upper())
    finally:
        await duplex.close()


async def test_egress_does_not_keep_the_cell_busy(make_manager: ManagerFactory) -> None:
    async with make_manager() as manager:
        cells = LocalCells(manager)
        async with cells.egress("alice") as conns:

            async def take() -> None:
                async with asyncio.TaskGroup() as group:
                    async for duplex in conns:
                        group.create_task(shout(duplex))

            taking = asyncio.create_task(take())
            try:
                assert (await cells.exec("alice", HELLO)).stdout == "HELLO\n"
                status = await cells.status("alice")
                assert status is not None
                assert status.active == 0
                later = time.time() + manager.settings.idle_pause_s + 1
                assert (await manager.reap(now=later)).paused == 1
                paused = await cells.status("alice")
                assert paused is not None
                assert paused.state is CellState.PAUSED
                # A call wakes it; the forwarder listens on as before.
                assert (await cells.exec("alice", HELLO)).stdout == "HELLO\n"
                assert not taking.done()
            finally:
                taking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await taking


async def test_a_stopped_cell_ends_the_egress(make_manager: ManagerFactory) -> None:
    async with make_manager() as manager:
        cells = LocalCells(manager)
        await cells.ensure("bob")
        async with cells.egress("bob") as conns:
            later = time.time() + manager.settings.idle_stop_s + 1
            assert (await manager.reap(now=later)).stopped == 1
            with pytest.raises(ExecutorUnreachable):
                async with asyncio.timeout(30):
                    await anext(conns)
