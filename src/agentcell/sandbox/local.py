"""``LocalCells``: the ``CellService`` of cells on this host, over a ``CellManager``."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from types import TracebackType
from typing import Literal

from agentcell.config import Settings
from agentcell.errors import AgentcellError
from agentcell.executor.client import ExecResult
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import (
    DesktopInfo,
    Entries,
    Entry,
    Exit,
    Extract,
    Extracted,
    JobInfo,
    JobStart,
    Language,
    Output,
    Port,
    Process,
    TerminalInfo,
)
from agentcell.sandbox.audit import ExecAudit
from agentcell.sandbox.base import CellState
from agentcell.sandbox.cell import Cell
from agentcell.sandbox.egress import EgressHooks
from agentcell.sandbox.manager import CellManager
from agentcell.sandbox.placements import Placements
from agentcell.sandbox.portpool import PortStream
from agentcell.sandbox.service import (
    READ_BYTES_MAX,
    CellCounters,
    CellHealth,
    CellProfile,
    CellService,
    CellStatus,
    ReapReport,
)


def status_of(cell: Cell) -> CellStatus:
    return CellStatus(
        owner=cell.owner,
        cell_id=cell.cell_id,
        container_id=cell.container_id,
        state=cell.state,
        active=cell.active,
        created_at=cell.created_at,
        last_active_at=cell.last_active_at,
    )


class LocalCells(CellService):
    """Cells in this process. ``async with`` starts the manager and closes it."""

    def __init__(self, manager: CellManager) -> None:
        self.manager = manager

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        exec_audit: ExecAudit | None = None,
        placements: Placements | None = None,
        egress: EgressHooks | None = None,
    ) -> LocalCells:
        """Cells on the backend the settings choose; every exec recorded in ``exec_audit``;
        owners' cells placed in ``placements`` (default: a JSON file in the data dir); their
        egress (and the env of their programs) from ``egress`` (default: none)."""
        manager = CellManager(settings, exec_audit=exec_audit, placements=placements, egress=egress)
        return cls(manager)

    async def __aenter__(self) -> LocalCells:
        await self.manager.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.manager.close()

    # --- lifecycle ------------------------------------------------------------------------

    async def ensure(self, owner: str) -> CellStatus:
        return status_of(await self.manager.ensure(owner))

    async def status(self, owner: str, *, usage: bool = False) -> CellStatus | None:
        cell = self.manager.get(owner)
        if cell is None or not usage:
            return None if cell is None else status_of(cell)
        backend, running = self.manager.backend, cell.state is CellState.RUNNING

        def read() -> CellStatus:  # a cgroup file and a statvfs: well under a millisecond
            return dataclasses.replace(
                status_of(cell),
                memory_bytes=backend.memory_bytes(cell.container_id) if running else None,
                storage_bytes=backend.storage_used_bytes(cell.cell_id),
            )

        return await asyncio.to_thread(read)

    async def restart(self, owner: str) -> CellStatus:
        return status_of(await self.manager.restart(owner))

    async def remove(self, owner: str, *, delete_workspace: bool = False) -> None:
        await self.manager.remove(owner, delete_workspace=delete_workspace)

    @asynccontextmanager
    async def using(self, owner: str) -> AsyncIterator[None]:
        cell = await self.manager.ensure(owner)
        async with cell.using():
            yield

    # --- code ------------------------------------------------------------------------------

    async def exec(
        self,
        owner: str,
        code: str,
        language: Language = "python",
        *,
        context: str = "default",
        timeout_s: float | None = None,
        output_limit: int | None = None,
        env: dict[str, str] | None = None,
        background: bool = False,
    ) -> ExecResult:
        cell = await self.manager.ensure(owner)
        return await cell.exec(
            code,
            language,
            context=context,
            timeout_s=timeout_s,
            output_limit=output_limit,
            env=env,
            background=background,
        )

    async def stream(
        self,
        owner: str,
        code: str,
        language: Language = "python",
        *,
        context: str = "default",
        timeout_s: float | None = None,
        output_limit: int | None = None,
        env: dict[str, str] | None = None,
        background: bool = False,
    ) -> AsyncGenerator[Output | Exit, None]:
        cell = await self.manager.ensure(owner)
        events = cell.stream(
            code,
            language,
            context=context,
            timeout_s=timeout_s,
            output_limit=output_limit,
            env=env,
            background=background,
        )
        async with aclosing(events):
            async for event in events:
                yield event

    async def interrupt(self, owner: str, context: str = "default") -> None:
        await (await self.manager.ensure(owner)).interrupt(context)

    async def processes(self, owner: str) -> list[Process]:
        return await (await self.manager.ensure(owner)).processes()

    async def kill_process(self, owner: str, pid: int) -> None:
        await (await self.manager.ensure(owner)).kill_process(pid)

    # --- jobs ------------------------------------------------------------------------------

    async def start_job(self, owner: str, req: JobStart) -> JobInfo:
        return await (await self.manager.ensure(owner)).start_job(req)

    async def job_status(self, owner: str, job_id: str) -> JobInfo:
        return await (await self.manager.ensure(owner)).job_status(job_id)

    async def jobs(self, owner: str) -> list[JobInfo]:
        return await (await self.manager.ensure(owner)).jobs()

    async def wait_job(self, owner: str, job_id: str) -> JobInfo:
        return await (await self.manager.ensure(owner)).wait_job(job_id)

    async def job_log(
        self, owner: str, job_id: str, offset: int = 0, follow: bool = False
    ) -> AsyncGenerator[bytes, None]:
        chunks = (await self.manager.ensure(owner)).job_log(job_id, offset, follow)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def cancel_job(self, owner: str, job_id: str) -> JobInfo:
        return await (await self.manager.ensure(owner)).cancel_job(job_id)

    async def append_job_log(self, owner: str, job_id: str, text: str) -> None:
        await (await self.manager.ensure(owner)).append_job_log(job_id, text)

    async def end_job(self, owner: str, job_id: str, exit_code: int) -> JobInfo:
        return await (await self.manager.ensure(owner)).end_job(job_id, exit_code)

    async def forget_job(self, owner: str, job_id: str) -> None:
        await (await self.manager.ensure(owner)).forget_job(job_id)

    @asynccontextmanager
    async def egress(self, owner: str) -> AsyncIterator[AsyncIterator[Duplex]]:
        cell = await self.manager.ensure(owner)
        async with cell.egress() as conns:
            yield conns

    async def ports(self, owner: str) -> list[Port]:
        return await (await self.manager.ensure(owner)).ports()

    @asynccontextmanager
    async def connect(
        self, owner: str, port: int, *, reuse: bool = False
    ) -> AsyncIterator[PortStream]:
        cell = await self.manager.ensure(owner)
        async with cell.connect(port, reuse=reuse) as stream:
            yield stream

    @asynccontextmanager
    async def terminal(
        self, owner: str, terminal: str = "", cols: int = 80, rows: int = 24
    ) -> AsyncIterator[tuple[TerminalInfo, Duplex]]:
        cell = await self.manager.ensure(owner)
        async with cell.terminal(terminal, cols, rows) as attached:
            yield attached

    async def terminals(self, owner: str) -> list[TerminalInfo]:
        return await (await self.manager.ensure(owner)).terminals()

    async def resize_terminal(self, owner: str, terminal: str, cols: int, rows: int) -> None:
        await (await self.manager.ensure(owner)).resize_terminal(terminal, cols, rows)

    async def close_terminal(self, owner: str, terminal: str) -> TerminalInfo:
        return await (await self.manager.ensure(owner)).close_terminal(terminal)

    async def start_desktop(self, owner: str) -> DesktopInfo:
        return await (await self.manager.ensure(owner)).start_desktop()

    # --- files -----------------------------------------------------------------------------

    async def list_files(self, owner: str, path: str = ".") -> list[Entry]:
        return await (await self.manager.ensure(owner)).files.list(path)

    async def list_page(
        self, owner: str, path: str = ".", limit: int = 0, cursor: str = ""
    ) -> Entries:
        return await (await self.manager.ensure(owner)).files.page(path, limit, cursor)

    async def read_bytes(self, owner: str, path: str, max_bytes: int = READ_BYTES_MAX) -> bytes:
        return await (await self.manager.ensure(owner)).files.read_bytes(path, max_bytes)

    async def read(self, owner: str, path: str, max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        chunks = (await self.manager.ensure(owner)).files.read(path, max_bytes)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def zip(
        self, owner: str, path: str = ".", max_bytes: int = 0
    ) -> AsyncGenerator[bytes, None]:
        chunks = (await self.manager.ensure(owner)).files.zip(path, max_bytes)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def write(self, owner: str, path: str, data: bytes | AsyncIterable[bytes]) -> int:
        return await (await self.manager.ensure(owner)).files.write(path, data)

    async def extract(
        self, owner: str, req: Extract, data: bytes | AsyncIterable[bytes]
    ) -> Extracted:
        return await (await self.manager.ensure(owner)).files.extract(req, data)

    async def delete(self, owner: str, path: str, *, recursive: bool = False) -> None:
        await (await self.manager.ensure(owner)).files.delete(path, recursive=recursive)

    # --- the operator's -----------------------------------------------------------------

    async def profile(self) -> CellProfile:
        s = self.manager.settings
        return CellProfile(image=self.manager.image, limits=s.limits)

    async def overview(self) -> list[CellStatus]:
        def read() -> list[CellStatus]:  # a cgroup file a cell here, each a few microseconds
            memory = self.manager.backend.memory_bytes
            return [
                dataclasses.replace(status_of(c), memory_bytes=memory(c.container_id))
                if c.state is CellState.RUNNING
                else status_of(c)
                for c in self.manager.cells()
            ]

        return await asyncio.to_thread(read)

    async def reap(self) -> ReapReport:
        return await self.manager.reap()

    async def put_down(self, owner: str, tier: Literal["pause", "stop", "remove"]) -> CellState:
        return await self.manager.put_down(owner, tier)

    async def health(self) -> CellHealth:
        backend = self.manager.backend
        try:
            await asyncio.to_thread(backend.ping)
            ok = True
        except AgentcellError:
            ok = False
        return CellHealth(backend=ok, storage_quota=backend.features.storage_quota)

    async def counters(self) -> CellCounters:
        return CellCounters(reaper_errors=self.manager.reaper.errors)
