"""The warm pool: cells started ahead with fresh, empty workspaces, handed to new owners (their
storage is named by an opaque id, so a pooled cell can become anyone's)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from agentcell.errors import AgentcellError, HostMemoryFull
from agentcell.sandbox.base import CellState, ContainerInfo
from agentcell.sandbox.cell import Cell
from agentcell.sandbox.lifecycle import Lifecycle

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


def new_cell_id() -> str:
    return secrets.token_hex(8)


class WarmPool:
    def __init__(self, lifecycle: Lifecycle, size: int, spawn: Spawn) -> None:
        self.lifecycle = lifecycle
        self.size = size
        self.cells = lifecycle.roster.pool
        self._spawn = spawn
        self._refilling: asyncio.Task[None] | None = None

    def take(self, owner: str) -> Cell | None:
        """A running pooled cell, now the owner's, or ``None`` when the pool is empty; the
        pool refills in the background."""
        if not self.cells:
            return None
        cell = self.cells.pop()
        cell.owner = owner
        self.refill()
        return cell

    def refill(self) -> None:
        """Start filling the pool up to its size, unless that is under way."""
        if self._refilling is None or self._refilling.done():
            self._refilling = self._spawn(self._refill())

    async def _refill(self) -> None:
        while len(self.cells) < self.size:
            try:
                cell = await self.lifecycle.create(new_cell_id(), owner="")
            except HostMemoryFull as exc:
                log.info("warm pool: not refilled: %s", exc.message)
                return
            except AgentcellError as exc:
                log.error("warm pool: could not start a cell: %s", exc)
                return
            self.cells.append(cell)

    def adoptable(self, info: ContainerInfo) -> bool:
        """Whether an ownerless container found at start can serve in the pool."""
        return (
            info.state is CellState.RUNNING
            and info.image == self.lifecycle.image
            and len(self.cells) < self.size
        )

    async def drop_dead(self) -> None:
        """Remove pooled cells that died, and refill."""
        dead = [c for c in self.cells if c.state is CellState.DEAD]
        for cell in dead:
            self.cells.remove(cell)
            await self.lifecycle.discard(cell)
        if dead:
            self.refill()

    async def empty(self) -> None:
        while self.cells:
            await self.lifecycle.discard(self.cells.pop())
