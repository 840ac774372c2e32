"""A user's cell as the rest of agentcell sees it: run code, stream output, manage files, run
jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from agentcell.config import Settings
from agentcell.errors import (
    AgentcellError,
    CellDied,
    CellOutOfMemory,
    CellStuck,
    ExecutorUnreachable,
    InvalidRequest,
)
from agentcell.executor.client import ExecResult
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import (
    DesktopInfo,
    Entries,
    Entry,
    Exec,
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
from agentcell.sandbox.audit import ExecAudit, audited
from agentcell.sandbox.base import CellState, ContainerInfo, ExecutorChannel
from agentcell.sandbox.portpool import PortPool, PortStream

log = logging.getLogger(__name__)


class CellKeeper(Protocol):
    """What a cell needs from whoever keeps it (the manager), and nothing more of it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def exec_audit(self) -> ExecAudit | None:
        """Where every exec is recorded; ``None``: nowhere (tests, benchmarks)."""
        ...

    async def wake(self, cell: Cell) -> None:
        """Bring the cell back to running, whatever state it is in."""
        ...

    async def recover(self, cell: Cell) -> AgentcellError:
        """The executor stopped answering: recreate the cell; the error to raise, saying why."""
        ...

    async def cell_env(self, owner: str) -> dict[str, str]:
        """What every exec and job of the owner's gets in its environment besides its own
        (the placeholders of their secrets, DESIGN §10)."""
        ...


# What a lookup or a connection says in a cell without a network interface.
NETWORK_FAILURES = (
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No address associated with hostname",
    "Could not resolve host",
)
NO_NETWORK = (
    "agentcell: this cell has no network interface: programs reach other hosts only through the "
    "egress proxy ($HTTPS_PROXY), and only those the network policy allows (agentcell network "
    "show; GET /v1/cell/network)\n"
)


@dataclass
class Cell:
    """One user's sandbox. Get it from ``CellManager.ensure``; every call wakes it if needed."""

    owner: str
    cell_id: str
    container_id: str
    state: CellState
    client: ExecutorChannel
    keeper: CellKeeper = field(repr=False)
    created_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)
    active: int = 0  # running execs and open streams: a cell with any is never idle
    notice: AgentcellError | None = None  # an unexpected death, reported on the next call
    port_pool: PortPool = field(default_factory=PortPool, repr=False)

    @property
    def files(self) -> CellFiles:
        return CellFiles(self)

    def idle_for(self, now: float) -> float:
        return 0.0 if self.active else now - self.last_active_at

    @asynccontextmanager
    async def using(self) -> AsyncIterator[ExecutorChannel]:
        """Mark the cell busy, wake it, and turn a lost executor into a clear error."""
        self.active += 1
        self.last_active_at = time.time()
        try:
            if self.notice is not None:
                notice, self.notice = self.notice, None
                raise notice
            if self.state is not CellState.RUNNING:
                await self.keeper.wake(self)
            try:
                yield self.client
            except CellStuck as exc:
                await self.keeper.recover(self)
                raise CellStuck(
                    f"{exc.message}; the cell was restarted: python variables and background "
                    "processes are gone, files in /workspace are kept"
                ) from None
            except ExecutorUnreachable as exc:
                log.warning("the executor of cell %s: %s", self.cell_id, exc)
                raise await self.keeper.recover(self) from None
        finally:
            self.active -= 1
            self.last_active_at = time.time()

    def _request(
        self,
        code: str,
        language: Language,
        context: str,
        timeout_s: float | None,
        output_limit: int | None,
        env: dict[str, str] | None,
        background: bool = False,
    ) -> Exec:
        settings = self.keeper.settings
        timeout = settings.exec_timeout_s if timeout_s is None else timeout_s
        if not 0 < timeout <= settings.exec_timeout_max_s:
            raise InvalidRequest(
                f"timeout_s must be above 0 and at most {settings.exec_timeout_max_s:g}"
            )
        if language not in ("python", "shell"):
            raise InvalidRequest(f"unknown language {language!r}", hint="use python or shell")
        limit = settings.output_limit_bytes
        return Exec(
            code=code,
            language=language,
            context=context,
            timeout_s=timeout,
            output_limit=limit if output_limit is None else min(output_limit, limit),
            env=env or {},
            background=background,
        )

    def _oom(self, context: str) -> CellOutOfMemory:
        mib = self.keeper.settings.limits.memory_mb
        return CellOutOfMemory(
            f"the code ran out of memory (this cell's limit is {mib} MiB) and was killed; "
            f"python context {context!r} was reset, so its variables are gone",
            hint="files in /workspace are kept; use less memory, or process data in chunks. "
            "Files in /tmp and /dev/shm live in memory and count against this limit: write "
            "large files to /workspace",
        )

    async def exec(
        self,
        code: str,
        language: Language = "python",
        *,
        context: str = "default",
        timeout_s: float | None = None,
        output_limit: int | None = None,
        env: dict[str, str] | None = None,
        background: bool = False,
    ) -> ExecResult:
        """Run code and collect its output. python keeps state per ``context``; processes it
        leaves running are killed at its end unless ``background``."""
        request = self._request(code, language, context, timeout_s, output_limit, env, background)
        request.env = {**await self.keeper.cell_env(self.owner), **request.env}
        with audited(self.keeper.exec_audit, self.owner, language, code) as record:
            async with self.using() as client:
                result = await client.exec(request)
            if result.oom_killed:
                raise self._oom(context)
            record.exit(
                result.exit_code, timed_out=result.timed_out, context_reset=result.context_reset
            )
        if network_failed(result.stderr):
            result.stderr += NO_NETWORK
        return result

    async def stream(
        self,
        code: str,
        language: Language = "python",
        *,
        context: str = "default",
        timeout_s: float | None = None,
        output_limit: int | None = None,
        env: dict[str, str] | None = None,
        background: bool = False,
    ) -> AsyncGenerator[Output | Exit, None]:
        """Run code, yielding output events as they come and the ``Exit`` last."""
        request = self._request(code, language, context, timeout_s, output_limit, env, background)
        request.env = {**await self.keeper.cell_env(self.owner), **request.env}
        failed = False
        with audited(self.keeper.exec_audit, self.owner, language, code) as record:
            async with self.using() as client:
                async for event in client.stream(request):
                    if isinstance(event, Exit):
                        if event.oom_killed:
                            raise self._oom(context)
                        record.exit(
                            event.exit_code,
                            timed_out=event.timed_out,
                            context_reset=event.context_reset,
                        )
                        if failed:
                            yield Output("stderr", NO_NETWORK)
                    elif event.stream == "stderr":
                        failed = failed or network_failed(event.data)
                    yield event

    async def interrupt(self, context: str = "default") -> None:
        async with self.using() as client:
            await client.interrupt(context)

    async def processes(self) -> list[Process]:
        """The processes background execs kept running."""
        async with self.using() as client:
            return await client.list_processes()

    async def kill_process(self, pid: int) -> None:
        """Kill a kept process and everything under it."""
        async with self.using() as client:
            await client.kill_process(pid)

    # Jobs: each call holds the cell busy while it is in flight, so a wait or a follow keeps the
    # cell from being paused or stopped (CellService says what each does).

    async def start_job(self, req: JobStart) -> JobInfo:
        req.env = {**await self.keeper.cell_env(self.owner), **req.env}
        async with self.using() as client:
            return await client.start_job(req)

    async def job_status(self, job_id: str) -> JobInfo:
        async with self.using() as client:
            return await client.job_status(job_id)

    async def jobs(self) -> list[JobInfo]:
        async with self.using() as client:
            return await client.jobs()

    async def wait_job(self, job_id: str) -> JobInfo:
        async with self.using() as client:
            return await client.wait_job(job_id)

    async def job_log(
        self, job_id: str, offset: int = 0, follow: bool = False
    ) -> AsyncGenerator[bytes, None]:
        async with self.using() as client, aclosing(client.job_log(job_id, offset, follow)) as log:
            async for chunk in log:  # closed early: the connection is closed at once
                yield chunk

    async def cancel_job(self, job_id: str) -> JobInfo:
        async with self.using() as client:
            return await client.cancel_job(job_id)

    async def append_job_log(self, job_id: str, text: str) -> None:
        async with self.using() as client:
            await client.append_job_log(job_id, text)

    async def end_job(self, job_id: str, exit_code: int) -> JobInfo:
        async with self.using() as client:
            return await client.end_job(job_id, exit_code)

    async def forget_job(self, job_id: str) -> None:
        async with self.using() as client:
            await client.forget_job(job_id)

    @asynccontextmanager
    async def egress(self) -> AsyncIterator[AsyncIterator[Duplex]]:
        """The cell's egress forwarder for the block (CellService.egress). Not a use of the
        cell: the listen alone lets it go idle (paused, it is only silent), and a lost executor
        ends the iteration without recreating the cell (the caller listens on the next one)."""
        if self.state is not CellState.RUNNING:
            await self.keeper.wake(self)
        async with self.client.egress() as conns:
            yield conns

    async def ports(self) -> list[Port]:
        async with self.using() as client:
            return await client.list_ports()

    @asynccontextmanager
    async def connect(self, port: int, *, reuse: bool = False) -> AsyncIterator[PortStream]:
        """A connection to ``port`` on the cell's loopback for the block. The cell is in use
        while it is open: a relayed page, desktop or notebook keeps it from being paused.
        ``reuse``: an idle one from an earlier exchange may serve, and one ``keep()`` marks
        goes back to the pool (portpool.py) instead of being closed."""
        async with self.using() as client:
            idle = self.port_pool.take(port) if reuse else None
            stream = PortStream(idle or await client.connect(port), reused=idle is not None)
            try:
                yield stream
            finally:
                if not (reuse and stream.kept and self.port_pool.give(port, stream.duplex)):
                    await stream.close()

    @asynccontextmanager
    async def terminal(
        self, terminal: str, cols: int, rows: int
    ) -> AsyncIterator[tuple[TerminalInfo, Duplex]]:
        """Attached to a terminal (``""``: a new one) for the block, which keeps the cell in use."""
        async with self.using() as client:
            info, duplex = await client.attach_terminal(terminal, cols, rows)
            try:
                yield info, duplex
            finally:
                await duplex.close()

    async def terminals(self) -> list[TerminalInfo]:
        async with self.using() as client:
            return await client.terminals()

    async def resize_terminal(self, terminal: str, cols: int, rows: int) -> None:
        async with self.using() as client:
            await client.resize_terminal(terminal, cols, rows)

    async def close_terminal(self, terminal: str) -> TerminalInfo:
        async with self.using() as client:
            return await client.close_terminal(terminal)

    async def start_desktop(self) -> DesktopInfo:
        async with self.using() as client:
            return await client.start_desktop()


def network_failed(stderr: str) -> bool:
    return any(failure in stderr for failure in NETWORK_FAILURES)


@dataclass
class CellFiles:
    """Files in the workspace, read and written by the executor inside the cell."""

    cell: Cell

    async def list(self, path: str = ".") -> list[Entry]:
        async with self.cell.using() as client:
            return await client.list(path)

    async def page(self, path: str = ".", limit: int = 0, cursor: str = "") -> Entries:
        """One page of a folder's entries; ``next_cursor`` asks for the next."""
        async with self.cell.using() as client:
            return await client.list_page(path, limit, cursor)

    async def read_bytes(self, path: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        async with self.cell.using() as client:
            return await client.read_bytes(path, max_bytes)

    async def read(self, path: str, max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        async with self.cell.using() as client:
            async for chunk in client.read(path, max_bytes):
                yield chunk

    async def zip(self, path: str = ".", max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        """A ZIP of a workspace folder, made inside the cell (links are never followed)."""
        async with self.cell.using() as client:
            async for chunk in client.zip(path, max_bytes):
                yield chunk

    async def write(self, path: str, data: bytes | AsyncIterable[bytes]) -> int:
        async with self.cell.using() as client:
            return await client.write(path, data)

    async def extract(self, req: Extract, data: bytes | AsyncIterable[bytes]) -> Extracted:
        """Unpack an archive into a workspace folder, inside the cell (see ExecutorClient)."""
        async with self.cell.using() as client:
            return await client.extract(req, data)

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        async with self.cell.using() as client:
            await client.delete(path, recursive=recursive)


def death_error(info: ContainerInfo | None, memory_mb: int) -> CellDied:
    """What to tell the owner of a cell whose container died, given what the backend saw."""
    after = "it was restarted: python variables are gone, files in /workspace are kept"
    if info is None:
        return CellDied(f"your cell's container disappeared; {after}", hint="retry the call")
    if info.state in (CellState.RUNNING, CellState.PAUSED):
        return CellDied(f"your cell's executor stopped answering; {after}", hint="retry the call")
    if info.oom_killed:
        return CellOutOfMemory(
            f"your cell ran out of memory (limit {memory_mb} MiB) and was killed; {after}",
            hint="retry with code that uses less memory; files in /tmp and /dev/shm live in "
            "memory and count against the limit (write large files to /workspace)",
        )
    if info.exit_code == 137:  # SIGKILL: the OOM killer (not of PID 1) or someone outside
        return CellDied(
            f"your cell was killed (SIGKILL; most often that means it ran out of its "
            f"{memory_mb} MiB of memory); {after}",
            hint="retry the call; if it happens again, use less memory",
        )
    return CellDied(
        f"your cell stopped unexpectedly (exit code {info.exit_code}); {after}",
        hint="retry the call",
    )
