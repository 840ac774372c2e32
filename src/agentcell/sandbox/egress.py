"""Every running cell's egress forwarder kept listening, its connections handed to the proxy.

A cell has no network interface (DESIGN §10); its programs reach other hosts only through the
forwarder on its loopback, which listens while the host holds a listen on it. ``Listeners``
holds one for each owned cell that runs, from whichever call finds it running, and gives each
connection, with the owner it came from, to ``EgressHooks.connection``: the owner is known by
the cell the connection came through, never by anything the cell says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from agentcell.errors import AgentcellError, Conflict
from agentcell.executor.duplex import Duplex
from agentcell.sandbox.base import CellState

if TYPE_CHECKING:
    from agentcell.sandbox.cell import Cell

log = logging.getLogger(__name__)
CONFLICT_RETRY_S = 0.5  # the listen of a cell's previous host (a server just killed) ends soon
CONFLICT_TRIES = 20


class EgressHooks(Protocol):
    """What cells need from the egress side: the environment their programs get, and where
    their connections go."""

    async def env(self, owner: str) -> dict[str, str]:
        """Added to every exec's and job's environment (placeholders of the owner's secrets)."""
        ...

    async def connection(self, owner: str, conn: Duplex) -> None:
        """Carry one connection a program in the owner's cell opened; close it at the end."""
        ...


Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Listeners:
    """One listen per running owned cell (by container: a recreated cell gets a new one).
    Without hooks, none: the forwarder's port stays closed (connections are refused)."""

    def __init__(self, hooks: EgressHooks | None, spawn: Spawn) -> None:
        self.hooks = hooks
        self.spawn = spawn
        self.listening: dict[str, str] = {}  # cell_id -> the container listened on
        self.connections: set[asyncio.Task[None]] = set()

    def watch(self, cell: Cell) -> None:
        """Listen on the cell's forwarder unless that is under way; call it whenever the cell
        is found running (cheap: a dict lookup)."""
        if self.hooks is None or not cell.owner:
            return
        if self.listening.get(cell.cell_id) == cell.container_id:
            return
        self.listening[cell.cell_id] = cell.container_id
        self.spawn(self._listen(cell, cell.container_id))

    async def _listen(self, cell: Cell, container_id: str) -> None:
        try:
            for _ in range(CONFLICT_TRIES):
                if cell.state is not CellState.RUNNING or cell.container_id != container_id:
                    return  # gone down meanwhile: whoever wakes it watches it again
                try:
                    async with cell.client.egress() as conns:
                        async for conn in conns:
                            self._carry(cell.owner, conn)
                    return
                except Conflict:
                    await asyncio.sleep(CONFLICT_RETRY_S)
            log.warning("cell %s: its egress forwarder stays taken; no egress", cell.cell_id)
        except (AgentcellError, OSError) as exc:  # the executor went: the next start listens
            log.debug("cell %s: egress listen ended: %s", cell.cell_id, exc)
        finally:
            if self.listening.get(cell.cell_id) == container_id:
                del self.listening[cell.cell_id]

    def _carry(self, owner: str, conn: Duplex) -> None:
        task = asyncio.ensure_future(self._connection(owner, conn))
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)

    async def _connection(self, owner: str, conn: Duplex) -> None:
        assert self.hooks is not None  # no listen without them
        try:
            await self.hooks.connection(owner, conn)
        except Exception:
            log.exception("egress connection of %r failed", owner)
            await conn.close()

    async def close(self) -> None:
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
