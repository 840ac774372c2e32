"""The cell manager: exactly one cell per owner, lifecycle tiers, a warm pool, recovery.

It composes the parts: ``lifecycle`` (one container from creation to removal, admission),
``pool`` (the warm pool), ``reaper`` (idle tiers, deaths), ``reconcile`` (adoption at start).
Nothing here depends on memory surviving a restart: containers carry labels, the owner map is
a ``Placements``, and ``start()`` adopts our cells and removes orphans. Above the sandbox layer,
cells are reached through ``CellService`` (``sandbox.local``), not through this class.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

from agentcell.config import Settings
from agentcell.errors import AgentcellError, DockerUnavailable
from agentcell.progress import ProgressHook, no_progress
from agentcell.sandbox.audit import ExecAudit
from agentcell.sandbox.backends import make_backend
from agentcell.sandbox.base import Backend, CellState, ContainerInfo
from agentcell.sandbox.cell import Cell, death_error
from agentcell.sandbox.egress import EgressHooks, Listeners
from agentcell.sandbox.lifecycle import Lifecycle, Roster, memory_budget_mb
from agentcell.sandbox.placements import JsonPlacements, Placements
from agentcell.sandbox.pool import WarmPool, new_cell_id
from agentcell.sandbox.reaper import Reaper, Tier
from agentcell.sandbox.reconcile import reconcile
from agentcell.sandbox.service import ReapReport
from agentcell.sandbox.uids import CellUids

log = logging.getLogger(__name__)

DEATH_SETTLE_S = 2.0  # how long a cell whose executor hung up may take to finish dying


class CellManager:
    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        progress: ProgressHook = no_progress,
        *,
        placements: Placements | None = None,
        exec_audit: ExecAudit | None = None,
        egress: EgressHooks | None = None,
    ) -> None:
        self.settings = settings
        self.backend: Backend = backend or make_backend(settings, progress)
        data = settings.data_dir
        self.placements = placements or JsonPlacements(data / "cells.json")
        self.exec_audit = exec_audit  # every exec is recorded here (the server's store)
        self.roster = Roster()
        self.lifecycle = Lifecycle(
            settings, self.backend, CellUids(data / "uids.json"), self.roster, self
        )
        self.pool = WarmPool(self.lifecycle, settings.pool_size, self._spawn)
        self.reaper = Reaper(self.lifecycle, self.pool)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock_file: int | None = None
        self.egress_hooks = egress
        self.egress = Listeners(egress, self._spawn)

    # --- lifecycle of the manager -----------------------------------------------------------

    async def __aenter__(self) -> CellManager:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Reach the engine, make sure the image exists, adopt our cells, start background work."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._take_data_dir()
        try:
            await asyncio.to_thread(self.backend.ping)
            self.lifecycle.image = await asyncio.to_thread(self.backend.prepare_image)
            await self.reconcile()
        except BaseException:
            await self.close()  # a failed start leaves nothing behind
            raise
        self._spawn(self.reaper.run())
        self.pool.refill()

    async def close(self) -> None:
        """Stop background work, remove the warm pool, detach storage no container uses.

        Users' cells keep running: they belong to users, not to this process, and a running
        container keeps its bind mount of its workspace, so theirs stay mounted."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.egress.close()
        try:
            await self.pool.empty()
            await self.lifecycle.detach_unused()
        except AgentcellError as exc:
            log.warning("could not tidy up cells on close: %s", exc)
        self.backend.close()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def _take_data_dir(self) -> None:
        fd = os.open(self.settings.data_dir / "manager.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AgentcellError(
                f"another agentcell process is using {self.settings.data_dir}",
                hint="stop it, or give this one its own AGENTCELL_DATA_DIR",
            ) from None
        self._lock_file = fd

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- what callers use -------------------------------------------------------------------

    @property
    def image(self) -> str:
        return self.lifecycle.image

    async def ensure(self, owner: str) -> Cell:
        """The owner's cell, running. Creates it (from the warm pool when possible) on first use."""
        cell = self.roster.owned.get(owner)
        if cell is not None and cell.state is CellState.RUNNING:
            self.egress.watch(cell)
            return cell
        if not owner:
            raise AgentcellError("a cell needs an owner id")
        async with self.roster.locks[owner]:
            cell = self.roster.owned.get(owner)
            if cell is None:
                cell = await self._claim_or_create(owner)
                self.roster.owned[owner] = cell
            if cell.state is not CellState.RUNNING:
                await self.lifecycle.wake_locked(cell)
            self.egress.watch(cell)
            return cell

    def get(self, owner: str) -> Cell | None:
        return self.roster.owned.get(owner)

    def cells(self) -> list[Cell]:
        return self.roster.all()

    @property
    def pool_size(self) -> int:
        return len(self.roster.pool)

    async def restart(self, owner: str) -> Cell:
        """Recreate the owner's container (python contexts are lost, the workspace is kept)."""
        async with self.roster.locks[owner]:
            cell = self.roster.owned.get(owner)
            if cell is not None:
                await self.lifecycle.remove_locked(cell)
        return await self.ensure(owner)

    async def remove(self, owner: str, *, delete_workspace: bool = False) -> None:
        """Remove the owner's container; their workspace goes too only when asked."""
        async with self.roster.locks[owner]:
            cell = self.roster.owned.get(owner)
            if cell is not None:
                await self.lifecycle.remove_locked(cell)
            if delete_workspace:
                self.roster.owned.pop(owner, None)
                cell_id = await self.placements.cell_of(owner)
                if cell_id is not None:
                    await asyncio.to_thread(self.lifecycle.delete_storage, cell_id)
                    await self.placements.remove(owner)

    async def _claim_or_create(self, owner: str) -> Cell:
        cell_id = await self.placements.cell_of(owner)
        if cell_id is None:
            pooled = self.pool.take(owner)
            cell_id = pooled.cell_id if pooled else new_cell_id()
            try:
                await self.placements.assign(owner, cell_id)
            except BaseException:
                if pooled is not None:  # back to the pool, unowned
                    pooled.owner = ""
                    self.pool.cells.append(pooled)
                raise
            if pooled is not None:
                return pooled
        return await self.lifecycle.create(cell_id, owner)

    # --- what cells call back (``CellKeeper``) ----------------------------------------------

    async def wake(self, cell: Cell) -> None:
        """Bring a paused, stopped, removed or dead cell back to running."""
        async with self.roster.lock(cell):
            await self.lifecycle.wake_locked(cell)
        self.egress.watch(cell)

    async def cell_env(self, owner: str) -> dict[str, str]:
        return {} if self.egress_hooks is None else await self.egress_hooks.env(owner)

    async def recover(self, cell: Cell) -> AgentcellError:
        """The executor stopped answering: say why, recreate the cell, return the error to raise."""
        try:
            info = await self._settled(cell)
            error = death_error(info, self.settings.limits.memory_mb)
            log.warning("cell %s of %r died: %s", cell.cell_id, cell.owner, error.message)
            cell.state = CellState.DEAD
            await self.wake(cell)
        except DockerUnavailable as exc:
            cell.state = CellState.DEAD  # recreated on next use, once the engine is back
            log.warning("cell %s of %r lost with the engine: %s", cell.cell_id, cell.owner, exc)
            return DockerUnavailable(
                "the Docker engine went away while your cell was running, and the cell with "
                "it: python variables are gone, files in /workspace are kept",
                hint="retry when the engine is back; the cell then starts again by itself",
            )
        return error

    async def _settled(self, cell: Cell) -> ContainerInfo | None:
        """The container as it is once it has finished dying: an executor that hung up most
        often died with it (the OOM killer), and the engine says why only once it has
        exited. One that still runs after a moment has an executor that hangs."""
        deadline = time.monotonic() + DEATH_SETTLE_S
        while True:
            info = await asyncio.to_thread(self.backend.inspect, cell.container_id)
            if info is None or info.state is not CellState.RUNNING or time.monotonic() > deadline:
                return info
            await asyncio.sleep(0.1)

    # --- the parts, for operators and tests -------------------------------------------------

    async def reconcile(self) -> None:
        """Adopt our containers, remove orphans. Runs at start; safe to run again."""
        await reconcile(self.lifecycle, self.pool, self.placements)
        for cell in self.roster.owned.values():
            if cell.state is CellState.RUNNING:
                self.egress.watch(cell)

    async def reap(self, now: float | None = None) -> ReapReport:
        """Move idle cells down the tiers; notice cells that died on their own."""
        return await self.reaper.reap(now)

    async def put_down(self, owner: str, tier: Tier) -> CellState:
        """Pause, stop or remove one idle cell now (the workspace kept)."""
        return await self.reaper.put_down(owner, tier)

    def refill_pool(self) -> None:
        self.pool.refill()

    def memory_budget_mb(self) -> int | None:
        return memory_budget_mb(self.settings)

    def committed_mb(self) -> int:
        return self.lifecycle.committed_mb()
