"""The cell manager: exactly one cell per owner, lifecycle tiers, a warm pool, recovery.

Nothing here depends on memory surviving a restart: containers carry labels, the owner map is
on disk (``Registry``), and ``start()`` adopts our cells and removes orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from agentcell.config import Settings
from agentcell.errors import (
    AgentcellError,
    CellStartFailed,
    DockerUnavailable,
    HostMemoryFull,
)
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import SOCKET_NAME
from agentcell.progress import ProgressHook, no_progress
from agentcell.sandbox.audit import ExecAudit
from agentcell.sandbox.base import Backend, CellSpec, CellState, ContainerInfo
from agentcell.sandbox.cell import Cell, death_error
from agentcell.sandbox.registry import Registry
from agentcell.sandbox.uids import LEGACY_UID, CellUids
from agentcell.sandbox.workspaces import Workspaces

log = logging.getLogger(__name__)


@dataclass
class ReapReport:
    paused: int = 0
    stopped: int = 0
    removed: int = 0
    died: int = 0


class CellManager:
    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        progress: ProgressHook = no_progress,
    ) -> None:
        self.settings = settings
        if backend is None:
            from agentcell.sandbox.docker.backend import DockerBackend

            backend = DockerBackend(settings, progress)
        self.backend: Backend = backend
        data = settings.data_dir
        self.workspaces = Workspaces(data / "workspaces", settings.limits.workspace_mb)
        self._control_root = data / "cells"
        self.registry = Registry(data / "cells.json")
        self.uids = CellUids(data / "uids.json")
        self.image = ""
        self.exec_audit: ExecAudit | None = None  # every exec is recorded here (the server's store)
        self._cells: dict[str, Cell] = {}  # by owner
        self._pool: list[Cell] = []
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._refilling: asyncio.Task[None] | None = None
        self._lock_file: int | None = None
        self._starting: set[str] = set()  # cell ids admitted and starting: their memory counts

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
        self._control_root.mkdir(exist_ok=True, mode=0o700)
        self._take_data_dir()
        try:
            await asyncio.to_thread(self.backend.ping)
            self.image = await asyncio.to_thread(self.backend.prepare_image)
            await self.reconcile()
        except BaseException:
            await self.close()  # a failed start leaves nothing behind
            raise
        self._spawn(self._reaper())
        self.refill_pool()

    async def close(self) -> None:
        """Stop background work, remove the warm pool, unmount workspaces no container uses.

        Users' cells keep running: they belong to users, not to this process, and a running
        container keeps its bind mount of its workspace, so theirs stay mounted."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._tidy_up()
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

    async def _tidy_up(self) -> None:
        for cell in list(self._pool):
            self._pool.remove(cell)
            await asyncio.to_thread(self.backend.remove, cell.container_id)
            await asyncio.to_thread(self._delete_cell_files, cell.cell_id)
        await self._unmount_unused()

    async def _unmount_unused(self) -> None:
        """Unmount every workspace whose container is not running (or paused): start paths
        mount it again, and an unused mount is one less thing a reboot can get wrong."""
        infos = await asyncio.to_thread(self.backend.list)
        in_use = {i.cell_id for i in infos if i.state in (CellState.RUNNING, CellState.PAUSED)}
        for ws_id in self.workspaces.ids() - in_use - self._starting:
            await asyncio.to_thread(self.workspaces.unmount, ws_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- what callers use -------------------------------------------------------------------

    async def ensure(self, owner: str) -> Cell:
        """The owner's cell, running. Creates it (from the warm pool when possible) on first use."""
        cell = self._cells.get(owner)
        if cell is not None and cell.state is CellState.RUNNING:
            return cell
        if not owner:
            raise AgentcellError("a cell needs an owner id")
        async with self._locks[owner]:
            cell = self._cells.get(owner)
            if cell is None:
                cell = await self._claim_or_create(owner)
                self._cells[owner] = cell
            if cell.state is not CellState.RUNNING:
                await self._wake_locked(cell)
            return cell

    def get(self, owner: str) -> Cell | None:
        return self._cells.get(owner)

    def cells(self) -> list[Cell]:
        return [*self._cells.values(), *self._pool]

    @property
    def pool_size(self) -> int:
        return len(self._pool)

    async def restart(self, owner: str) -> Cell:
        """Recreate the owner's container (python contexts are lost, the workspace is kept)."""
        async with self._locks[owner]:
            cell = self._cells.get(owner)
            if cell is not None:
                await self._remove_container(cell)
        return await self.ensure(owner)

    async def remove(self, owner: str, *, delete_workspace: bool = False) -> None:
        """Remove the owner's container; their workspace goes too only when asked."""
        async with self._locks[owner]:
            cell = self._cells.get(owner)
            if cell is not None:
                await self._remove_container(cell)
            if delete_workspace:
                self._cells.pop(owner, None)
                cell_id = self.registry.cell_of(owner)
                if cell_id is not None:
                    await asyncio.to_thread(self._delete_cell_files, cell_id)
                    self.registry.forget(owner)

    # --- creating and waking cells ------------------------------------------------------------

    async def _claim_or_create(self, owner: str) -> Cell:
        cell_id = self.registry.cell_of(owner)
        if cell_id is None and self._pool:
            cell = self._pool.pop()
            cell.owner = owner
            self.registry.assign(owner, cell.cell_id)
            self.refill_pool()
            return cell
        if cell_id is None:
            cell_id = secrets.token_hex(8)
            self.registry.assign(owner, cell_id)
        return await self._create(cell_id, owner)

    def _uid(self, cell_id: str) -> int:
        """The cell's own uid; a cell whose workspace predates per-cell uids keeps 1000."""
        return self.uids.uid_for(cell_id, legacy=self.workspaces.exists(cell_id))

    def _control_dir(self, cell_id: str) -> Path:
        """Host side of /run/agentcell. The cell can write here; we only unlink and connect."""
        path = self._control_root / cell_id
        path.mkdir(exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            uid = self._uid(cell_id)
            os.chown(path, uid, uid)
        with contextlib.suppress(FileNotFoundError):
            (path / SOCKET_NAME).unlink()  # unlink never follows a link
        return path

    async def _create(self, cell_id: str, owner: str) -> Cell:
        uid = self._uid(cell_id)
        workspace = self.workspaces.path(cell_id)
        workspace.mkdir(exist_ok=True)  # Docker checks the bind source exists at create time
        control = self._control_dir(cell_id)
        spec = CellSpec(
            cell_id=cell_id,
            owner=owner,
            image=self.image,
            workspace=workspace,
            control_dir=control,
            limits=self.settings.limits,
            network=self.settings.network,
            runtime=self.settings.runtime,
            labels=dict(self.settings.labels),
            uid=uid,
        )
        # Binds resolve at start, so the workspace can be mounted while the container is created.
        mounted, info = await asyncio.gather(
            asyncio.to_thread(self.workspaces.ensure, cell_id, uid),
            asyncio.to_thread(self.backend.create, spec),
            return_exceptions=True,
        )
        if isinstance(info, BaseException) or isinstance(mounted, BaseException):
            if isinstance(info, ContainerInfo):
                await asyncio.to_thread(self.backend.remove, info.container_id)
            raise mounted if isinstance(mounted, BaseException) else info  # type: ignore[misc]
        cell = self._cell(cell_id, owner, info.container_id, CellState.STOPPED)
        try:
            await self._start(cell)
        except BaseException:
            await asyncio.to_thread(self.backend.remove, info.container_id)
            raise
        return cell

    async def _start(self, cell: Cell) -> None:
        """Every (re)start of a container comes here: admit it, mount its workspace, start."""
        await self._admit(cell)
        try:
            await asyncio.to_thread(self.workspaces.ensure, cell.cell_id, self._uid(cell.cell_id))
            self._control_dir(cell.cell_id)  # clears a stale socket: readiness = a fresh server
            await asyncio.to_thread(self.backend.start, cell.container_id)
            await self._wait_ready(cell)
            cell.state = CellState.RUNNING
        finally:
            self._starting.discard(cell.cell_id)

    # --- admission against the host's memory ------------------------------------------------

    def memory_budget_mb(self) -> int | None:
        """Memory all cells' limits may add up to: the setting, else MemTotal minus a reserve."""
        if self.settings.host_memory_mb:
            return self.settings.host_memory_mb
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) // 1024
                    return max(total - self.settings.host_memory_reserve_mb, 0)
        return None

    def committed_mb(self) -> int:
        holding = (CellState.RUNNING, CellState.PAUSED)  # a paused cell keeps its memory
        cells = sum(1 for c in self.cells() if c.state in holding) + len(self._starting)
        return cells * self.settings.limits.memory_mb

    async def _admit(self, cell: Cell) -> None:
        """Reserve the cell's memory limit, making room first (the pool, then the longest-idle
        cells are stopped); refuse when the host has no room. Pool cells never evict."""
        need = self.settings.limits.memory_mb
        budget = self.memory_budget_mb()
        while budget is not None and self.committed_mb() + need > budget:
            if not cell.owner or not await self._make_room(cell):
                if cell.owner:
                    log.warning(
                        "admission: no memory for the cell of %r; raise AGENTCELL_HOST_MEMORY_MB "
                        "or lower AGENTCELL_LIMITS__MEMORY_MB if the host has room",
                        cell.owner,
                    )
                raise HostMemoryFull(
                    f"the host has no memory for another cell: {self.committed_mb()} of "
                    f"{budget} MiB are promised to running cells, and this one needs {need} MiB",
                    hint="retry in a few minutes, when other cells have gone idle",
                )
        self._starting.add(cell.cell_id)

    async def _make_room(self, keep: Cell) -> bool:
        if self._pool:
            pooled = self._pool.pop(0)
            log.info("admission: removing pooled cell %s to make room", pooled.cell_id)
            await asyncio.to_thread(self.backend.remove, pooled.container_id)
            await asyncio.to_thread(self._delete_cell_files, pooled.cell_id)
            return True
        idle = [
            c
            for c in self._cells.values()
            if c is not keep
            and c.state in (CellState.RUNNING, CellState.PAUSED)
            and not c.active
            and not self._locks[c.owner].locked()
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.last_active_at)
        log.info("admission: stopping the cell of %r (longest idle) to make room", victim.owner)
        async with self._locks[victim.owner]:
            await self._stop_locked(victim)
        return True

    async def _stop_locked(self, cell: Cell) -> None:
        if cell.state is CellState.PAUSED:
            await asyncio.to_thread(self.backend.unpause, cell.container_id)
        await asyncio.to_thread(self.backend.stop, cell.container_id)
        cell.state = CellState.STOPPED
        await asyncio.to_thread(self.workspaces.unmount, cell.cell_id)

    async def _wait_ready(self, cell: Cell) -> None:
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

    async def wake(self, cell: Cell) -> None:
        """Bring a paused, stopped, removed or dead cell back to running."""
        async with self._locks[cell.owner or cell.cell_id]:
            await self._wake_locked(cell)

    async def _wake_locked(self, cell: Cell) -> None:
        if cell.state is CellState.PAUSED:
            await asyncio.to_thread(self.backend.unpause, cell.container_id)
            cell.state = CellState.RUNNING
        elif cell.state is CellState.STOPPED:
            info = await asyncio.to_thread(self.backend.inspect, cell.container_id)
            if info is None:
                cell.state = CellState.REMOVED
            else:
                await self._start(cell)
        if cell.state in (CellState.REMOVED, CellState.DEAD):
            await self._recreate(cell)

    async def _recreate(self, cell: Cell) -> None:
        if cell.container_id:  # none for a cell known only from the registry
            await asyncio.to_thread(self.backend.remove, cell.container_id)
        fresh = await self._create(cell.cell_id, cell.owner)
        cell.container_id, cell.state = fresh.container_id, fresh.state
        cell.created_at = fresh.created_at

    async def recover(self, cell: Cell) -> AgentcellError:
        """The executor stopped answering: say why, recreate the cell, return the error to raise."""
        try:
            info = await asyncio.to_thread(self.backend.inspect, cell.container_id)
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

    # --- warm pool ----------------------------------------------------------------------------

    def refill_pool(self) -> None:
        if self._refilling is None or self._refilling.done():
            self._refilling = self._spawn(self._refill())

    async def _refill(self) -> None:
        while len(self._pool) < self.settings.pool_size:
            try:
                cell = await self._create(secrets.token_hex(8), owner="")
            except HostMemoryFull as exc:
                log.info("warm pool: not refilled: %s", exc.message)
                return
            except AgentcellError as exc:
                log.error("warm pool: could not start a cell: %s", exc)
                return
            self._pool.append(cell)

    # --- reconciliation and idle tiers ------------------------------------------------------

    async def reconcile(self) -> None:
        """Adopt our containers, remove orphans. Runs at start; safe to run again."""
        containers = await asyncio.to_thread(self.backend.list)
        owners = {cell_id: owner for owner, cell_id in self.registry.owners().items()}
        known = {c.container_id for c in self.cells()}
        for info in containers:
            if info.container_id in known:
                continue
            self.uids.record(info.cell_id, LEGACY_UID if info.uid is None else info.uid)
            owner = owners.get(info.cell_id)
            if owner is not None and owner not in self._cells:
                self._cells[owner] = self._adopt(info, owner)
            elif owner is None and self._poolable(info):
                self._pool.append(self._adopt(info, ""))
            else:
                log.info("removing orphan container %s", info.container_id[:12])
                await asyncio.to_thread(self.backend.remove, info.container_id)
        for owner, cell_id in self.registry.owners().items():
            if owner not in self._cells:
                self._cells[owner] = self._cell(cell_id, owner)
        live = {c.cell_id for c in self.cells()} | set(owners)
        for cell_id in self.workspaces.ids() - live:
            await asyncio.to_thread(self._delete_cell_files, cell_id)
        await self._unmount_unused()

    def _poolable(self, info: ContainerInfo) -> bool:
        return (
            info.state is CellState.RUNNING
            and info.image == self.image
            and len(self._pool) < self.settings.pool_size
        )

    def _adopt(self, info: ContainerInfo, owner: str) -> Cell:
        state = CellState.STOPPED if info.state is CellState.DEAD else info.state
        if info.image != self.image and state is not CellState.RUNNING:
            state = CellState.REMOVED  # recreated from the current image when next used
        return self._cell(info.cell_id, owner, info.container_id, state, info.created_at)

    def _cell(
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
            workspace=self.workspaces.path(cell_id),
            client=ExecutorClient(self._control_root / cell_id),
            manager=self,
            created_at=created_at or time.time(),
        )

    async def _remove_container(self, cell: Cell) -> None:
        if cell.container_id:
            await asyncio.to_thread(self.backend.remove, cell.container_id)
        cell.state = CellState.REMOVED
        await asyncio.to_thread(self.workspaces.unmount, cell.cell_id)

    def _delete_cell_files(self, cell_id: str) -> None:
        self.workspaces.delete(cell_id)
        self.uids.forget(cell_id)
        control = self._control_root / cell_id
        with contextlib.suppress(FileNotFoundError):
            (control / SOCKET_NAME).unlink()
        with contextlib.suppress(FileNotFoundError, OSError):
            control.rmdir()

    async def reap(self, now: float | None = None) -> ReapReport:
        """Move idle cells down the tiers; notice cells that died on their own."""
        now = time.time() if now is None else now
        report = ReapReport()
        await self._notice_deaths(report)
        s = self.settings
        for cell in list(self._cells.values()):
            idle = cell.idle_for(now)
            if cell.active or cell.state in (CellState.REMOVED, CellState.DEAD):
                continue
            async with self._locks[cell.owner]:
                if idle >= s.idle_remove_s:
                    await self._remove_container(cell)
                    report.removed += 1
                elif idle >= s.idle_stop_s and cell.state is not CellState.STOPPED:
                    await self._stop_locked(cell)
                    report.stopped += 1
                elif idle >= s.idle_pause_s and cell.state is CellState.RUNNING:
                    await asyncio.to_thread(self.backend.pause, cell.container_id)
                    cell.state = CellState.PAUSED
                    report.paused += 1
        return report

    async def _notice_deaths(self, report: ReapReport) -> None:
        states = {c.container_id: c for c in await asyncio.to_thread(self.backend.list)}
        for cell in self.cells():
            if cell.state is not CellState.RUNNING or cell.active:
                continue
            info = states.get(cell.container_id)
            if info is None or info.state is not CellState.RUNNING:
                cell.state = CellState.DEAD
                cell.notice = death_error(info, self.settings.limits.memory_mb)
                report.died += 1
        dead_pool = [c for c in self._pool if c.state is CellState.DEAD]
        for cell in dead_pool:
            self._pool.remove(cell)
            await asyncio.to_thread(self.backend.remove, cell.container_id)
            await asyncio.to_thread(self._delete_cell_files, cell.cell_id)
        if dead_pool:
            self.refill_pool()

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            try:
                report = await self.reap()
            except AgentcellError as exc:
                log.error("reaper: %s", exc)
                continue
            if report != ReapReport():
                log.info("reaper: %s", report)
