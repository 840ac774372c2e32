"""One cell's container from creation to removal, and admission against the host's memory.

Everything that changes a cell's container holds its owner's lock (``Roster.lock``); the
methods named ``*_locked`` expect the caller to hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from agentcell.config import Settings
from agentcell.errors import AgentcellError, CellStartFailed, HostMemoryFull
from agentcell.sandbox.base import Backend, CellSpec, CellState, ContainerInfo
from agentcell.sandbox.cell import Cell, CellKeeper
from agentcell.sandbox.uids import CellUids

log = logging.getLogger(__name__)

HOLDING_MEMORY = (CellState.RUNNING, CellState.PAUSED)  # a paused cell keeps its memory


@dataclass
class Roster:
    """The cells one manager knows: by owner, the warm pool, those starting; and their locks."""

    owned: dict[str, Cell] = field(default_factory=dict)
    pool: list[Cell] = field(default_factory=list)
    starting: set[str] = field(default_factory=set)  # cell ids admitted: their memory counts
    making_room: int = 0  # owners' admissions waiting for room: the pool takes none meanwhile
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def all(self) -> list[Cell]:
        return [*self.owned.values(), *self.pool]

    def lock(self, cell: Cell) -> asyncio.Lock:
        """The owner's lock; a pooled cell's own until it has an owner."""
        return self.locks[cell.owner or cell.cell_id]


def memory_budget_mb(settings: Settings) -> int | None:
    """Memory all cells' limits may add up to: the setting, else MemTotal minus a reserve."""
    if settings.host_memory_mb:
        return settings.host_memory_mb
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) // 1024
                return max(total - settings.host_memory_reserve_mb, 0)
    return None


class Lifecycle:
    """The steps of a cell's container on the backend, each keeping ``Roster`` and the cell's
    ``state`` true to what the backend has."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        uids: CellUids,
        roster: Roster,
        keeper: CellKeeper,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.uids = uids
        self.roster = roster
        self.keeper = keeper
        self.image = ""  # what new containers run; set when the manager starts

    def cell(
        self,
        cell_id: str,
        owner: str,
        container_id: str = "",
        state: CellState = CellState.REMOVED,
        created_at: float | None = None,
    ) -> Cell:
        return Cell(
            owner=owner,
            cell_id=cell_id,
            container_id=container_id,
            state=state,
            client=self.backend.channel(cell_id),
            keeper=self.keeper,
            created_at=created_at or time.time(),
        )

    def uid(self, cell_id: str) -> int:
        """The cell's own uid; a cell whose workspace predates per-cell uids keeps 1000."""
        return self.uids.uid_for(cell_id, legacy=self.backend.has_storage(cell_id))

    # --- creating and starting ---------------------------------------------------------------

    async def create(self, cell_id: str, owner: str) -> Cell:
        uid = self.uid(cell_id)
        spec = CellSpec(
            cell_id=cell_id,
            owner=owner,
            image=self.image,
            limits=self.settings.limits,
            runtime=self.settings.runtime,
            labels=dict(self.settings.labels),
            uid=uid,
        )
        # Binds resolve at start, so the storage can be attached while the container is created.
        attached, info = await asyncio.gather(
            asyncio.to_thread(self.backend.attach_storage, cell_id, uid),
            asyncio.to_thread(self.backend.create, spec),
            return_exceptions=True,
        )
        if isinstance(info, BaseException) or isinstance(attached, BaseException):
            if isinstance(info, ContainerInfo):
                await asyncio.to_thread(self.backend.remove, info.container_id)
            raise attached if isinstance(attached, BaseException) else info  # type: ignore[misc]
        cell = self.cell(cell_id, owner, info.container_id, CellState.STOPPED)
        try:
            await self.start(cell)
        except BaseException:
            await asyncio.to_thread(self.backend.remove, info.container_id)
            raise
        return cell

    async def start(self, cell: Cell) -> None:
        """Every (re)start of a container comes here: admit it, attach its storage, start."""
        await self.admit(cell)
        try:
            uid = self.uid(cell.cell_id)
            await asyncio.to_thread(self.backend.attach_storage, cell.cell_id, uid)
            await asyncio.to_thread(self.backend.start, cell.container_id)
            await self.wait_ready(cell)
            cell.state = CellState.RUNNING
        finally:
            self.roster.starting.discard(cell.cell_id)

    async def wait_ready(self, cell: Cell) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        delay = 0.001
        while True:
            with contextlib.suppress(AgentcellError):
                await cell.client.ping()
                return
            if time.monotonic() > deadline:
                info = await asyncio.to_thread(self.backend.inspect, cell.container_id)
                state = info.state if info else "gone"
                raise CellStartFailed(
                    f"cell {cell.cell_id} did not answer within "
                    f"{self.settings.start_timeout_s:g}s (container {state})",
                    hint="see `docker logs` of the container; rebuild the image if it is stale",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.005)

    async def wake_locked(self, cell: Cell) -> None:
        """Bring a paused, stopped, removed or dead cell back to running."""
        if cell.state is CellState.PAUSED:
            await asyncio.to_thread(self.backend.unpause, cell.container_id)
            cell.state = CellState.RUNNING
        elif cell.state is CellState.STOPPED:
            info = await asyncio.to_thread(self.backend.inspect, cell.container_id)
            if info is None:
                cell.state = CellState.REMOVED
            else:
                await self.start(cell)
        if cell.state in (CellState.REMOVED, CellState.DEAD):
            await self.recreate(cell)

    async def recreate(self, cell: Cell) -> None:
        if cell.container_id:  # none for a cell known only from its placement
            await asyncio.to_thread(self.backend.remove, cell.container_id)
        fresh = await self.create(cell.cell_id, cell.owner)
        cell.container_id, cell.state = fresh.container_id, fresh.state
        cell.created_at = fresh.created_at

    # --- going down the tiers ----------------------------------------------------------------
    # Each marks the cell first: a call that starts meanwhile then sees it is not running, and
    # wakes it (waiting for the lock held here) instead of reaching a container going down.

    async def pause_locked(self, cell: Cell) -> None:
        cell.state = CellState.PAUSED
        try:
            await asyncio.to_thread(self.backend.pause, cell.container_id)
        except BaseException:
            cell.state = CellState.RUNNING
            raise

    async def stop_locked(self, cell: Cell) -> None:
        paused, cell.state = cell.state is CellState.PAUSED, CellState.STOPPED
        if paused:
            await asyncio.to_thread(self.backend.unpause, cell.container_id)
        await asyncio.to_thread(self.backend.stop, cell.container_id)
        await asyncio.to_thread(self.backend.detach_storage, cell.cell_id)

    async def remove_locked(self, cell: Cell) -> None:
        """Remove the container; the storage is kept."""
        cell.state = CellState.REMOVED
        if cell.container_id:
            await asyncio.to_thread(self.backend.remove, cell.container_id)
        await asyncio.to_thread(self.backend.detach_storage, cell.cell_id)

    async def discard(self, cell: Cell) -> None:
        """A pooled (ownerless) cell, container and storage, gone for good."""
        await asyncio.to_thread(self.backend.remove, cell.container_id)
        await asyncio.to_thread(self.delete_storage, cell.cell_id)

    def delete_storage(self, cell_id: str) -> None:
        self.backend.delete_storage(cell_id)
        self.uids.forget(cell_id)

    async def detach_unused(self) -> None:
        """Detach the storage of every cell whose container is not running (or paused): start
        paths attach it again, and an unused mount is one less thing a reboot can get wrong."""
        infos = await asyncio.to_thread(self.backend.list)
        in_use = {i.cell_id for i in infos if i.state in HOLDING_MEMORY}
        unused = self.backend.storage_ids() - in_use - self.roster.starting
        for cell_id in unused:
            await asyncio.to_thread(self.backend.detach_storage, cell_id)

    # --- admission against the host's memory -------------------------------------------------

    def committed_mb(self) -> int:
        cells = sum(1 for c in self.roster.all() if c.state in HOLDING_MEMORY)
        return (cells + len(self.roster.starting)) * self.settings.limits.memory_mb

    async def admit(self, cell: Cell) -> None:
        """Reserve the cell's memory limit, making room first (the pool, then the longest-idle
        cells are stopped); refuse when the host has no room. Pool cells never evict."""
        need = self.settings.limits.memory_mb
        budget = memory_budget_mb(self.settings)
        if not cell.owner and budget is not None and self.roster.making_room:
            raise HostMemoryFull("an owner's cell is waiting for room")  # theirs, not the pool's
        self.roster.making_room += bool(cell.owner)
        try:
            while budget is not None and self.committed_mb() + need > budget:
                if not cell.owner or not await self._make_room(cell):
                    raise self._full(cell, budget, need)
        finally:
            self.roster.making_room -= bool(cell.owner)
        self.roster.starting.add(cell.cell_id)

    def _full(self, cell: Cell, budget: int, need: int) -> HostMemoryFull:
        if cell.owner:
            log.warning(
                "admission: no memory for the cell of %r; raise AGENTCELL_HOST_MEMORY_MB "
                "or lower AGENTCELL_LIMITS__MEMORY_MB if the host has room",
                cell.owner,
            )
        return HostMemoryFull(
            f"the host has no memory for another cell: {self.committed_mb()} of "
            f"{budget} MiB are promised to running cells, and this one needs {need} MiB",
            hint="retry in a few minutes, when other cells have gone idle",
        )

    async def _make_room(self, keep: Cell) -> bool:
        roster = self.roster
        if roster.pool:
            pooled = roster.pool.pop(0)
            log.info("admission: removing pooled cell %s to make room", pooled.cell_id)
            await self.discard(pooled)
            return True
        idle = [
            c
            for c in roster.owned.values()
            if c is not keep
            and c.state in HOLDING_MEMORY
            and not c.active
            and not roster.lock(c).locked()
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.last_active_at)
        log.info("admission: stopping the cell of %r (longest idle) to make room", victim.owner)
        async with roster.lock(victim):
            if not victim.active and victim.state in HOLDING_MEMORY:  # still idle, now locked
                await self.stop_locked(victim)
        return True  # room made, or the victim got busy meanwhile: look again
