"""``CellService``: how everything above the sandbox layer reaches a user's cell.

Services, the agent, the API, jobs and the coming web page and MCP all go through it; only
``sandbox`` itself knows managers, backends, containers and sockets. It is implemented
in-process today (``sandbox.local.LocalCells``, over the ``CellManager``); an agentcell node on
another host (DESIGN §13) implements the same methods over the network, so nothing it takes or
returns is a live object: owner ids, plain values (frozen dataclasses, the executor's protocol
messages) and ``agentcell.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from agentcell.config import CellLimits
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
from agentcell.sandbox.base import CellState
from agentcell.sandbox.portpool import PortStream

READ_BYTES_MAX = 64 * 1024 * 1024  # what read_bytes holds in memory unless told otherwise


@dataclass(frozen=True)
class CellStatus:
    """One cell as it is now."""

    owner: str  # "" for a cell waiting in the warm pool
    cell_id: str
    container_id: str  # the backend's opaque id of the cell's container; "" when it has none
    state: CellState
    active: int  # calls and streams in flight
    created_at: float  # unix seconds
    last_active_at: float
    # Usage, read by status(usage=True) and overview() (None: unknown, or not running).
    memory_bytes: int | None = None  # in use, without page cache
    storage_bytes: int | None = None  # the workspace's volume holds (status only)


@dataclass(frozen=True)
class CellProfile:
    """What every cell gets here."""

    image: str
    limits: CellLimits


@dataclass(frozen=True)
class CellHealth:
    backend: bool  # the engine answers
    storage_quota: bool  # workspaces are size-capped (false: one user can fill the disk)


@dataclass(frozen=True)
class CellCounters:
    reaper_errors: int  # reaper rounds that failed (each is logged; the reaper goes on)


@dataclass
class ReapReport:
    paused: int = 0
    stopped: int = 0
    removed: int = 0
    died: int = 0


class CellService(Protocol):
    """A user's cell, by owner id.

    Every call on an owner's cell creates it on first use (from the warm pool when one is
    ready) and wakes it from any tier, so callers never manage lifecycle; a call or stream in
    flight keeps the cell from going idle. Errors are ``agentcell.errors``: ``InvalidRequest``
    (bad language or timeout), ``HostMemoryFull`` (no room to start the cell), ``CellDied`` /
    ``CellOutOfMemory`` (the cell died and was recreated: python state is gone, files are kept;
    retry), ``CellStuck``, ``DockerUnavailable``; the file calls also ``PathNotFound``,
    ``InvalidPath``, ``FileTooLarge``, ``WorkspaceFull``, ``UnsupportedFileType``. Paths are
    relative to the workspace; the cell resolves them and never follows a link out of it.

    Jobs (DESIGN §9) run in the cell, detached from any call: a call only starts, watches,
    reads or ends one, and every call in flight holds the cell busy (a ``wait_job`` or a
    followed ``job_log`` keeps it from being paused or stopped). The job calls also raise
    ``NotFound`` (no such job in the cell) and ``Conflict``.

    Egress (§10): ``egress(owner)`` gives the connections programs in the cell open to its
    forwarder, for the proxy to check against the owner's policy. A ``Duplex``
    (``executor.duplex``) is bytes both ways by ``recv``/``send``/``send_eof``/``close``, so it
    crosses a network as well as a process.

    Coming, on this same interface (not built yet):
    - terminals (§11): ``pty(owner, cols, rows) -> Duplex`` (plus resize and the exit code);
    - port relay (§11): ``relay(owner, port) -> Duplex`` (a byte stream to ``127.0.0.1:port``
      inside the cell) and ``ports(owner) -> list[int]``.
    """

    # --- lifecycle ------------------------------------------------------------------------

    async def ensure(self, owner: str) -> CellStatus:
        """The owner's cell, created or woken: running when this returns."""
        ...

    async def status(self, owner: str, *, usage: bool = False) -> CellStatus | None:
        """The owner's cell as it is; changes nothing. ``None``: the owner has no cell. With
        ``usage``, its memory and storage in use too (a cgroup file, a statvfs)."""
        ...

    async def restart(self, owner: str) -> CellStatus:
        """A fresh container (python state and background processes are gone), the same
        workspace; running when this returns."""
        ...

    async def remove(self, owner: str, *, delete_workspace: bool = False) -> None:
        """Remove the owner's container; the workspace too only when asked. Idempotent."""
        ...

    def using(self, owner: str) -> AbstractAsyncContextManager[None]:
        """Hold the owner's cell busy (never paused, stopped or removed) for the block, as a
        chat turn does between its tool calls; wakes it on entry."""
        ...

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
        """Run code and collect its output. python keeps state per ``context``; processes it
        leaves running are killed at its end unless ``background``. ``timeout_s``/``output_limit``
        ``None``: the deployment's default; a limit above the deployment's is lowered to it.
        A non-zero exit, a timeout or cut output is a result, not an error. Audited."""
        ...

    def stream(
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
        """As ``exec``, yielding output as it comes and the ``Exit`` last. Closing the
        generator early stops the code."""
        ...

    async def interrupt(self, owner: str, context: str = "default") -> None:
        """Stop what runs in the python context (its state is kept). Nothing running: no-op."""
        ...

    async def processes(self, owner: str) -> list[Process]:
        """The processes background execs kept running."""
        ...

    async def kill_process(self, owner: str, pid: int) -> None:
        """Kill a kept process and everything under it; ``NotFound`` if it is not one."""
        ...

    # --- jobs ------------------------------------------------------------------------------

    async def start_job(self, owner: str, req: JobStart) -> JobInfo:
        """Start a job in the owner's cell: ``python3 -u -c`` or ``bash -c`` of its code in a
        process tree of its own, its stdout and stderr in one log in the cell (2>&1, cut at
        ``log_limit``), killed at ``timeout_s`` by the cell itself (exit code 124,
        ``timed_out``), so it runs on while nobody is connected; at the main process's end
        whatever it left is killed. ``external``: no process, the caller writes the log
        (``append_job_log``) and ends it (``end_job``). The id is the caller's
        (``[A-Za-z0-9_-]{1,64}``); one the cell has already: ``Conflict``. Its folder is
        ``protocol.JOBS_DIR/<id>`` in the workspace."""
        ...

    async def job_status(self, owner: str, job_id: str) -> JobInfo:
        """The job as it is: ``running``, ``exited`` (its true end, even if it came while
        nobody was connected), or ``lost`` (the cell restarted while it ran)."""
        ...

    async def jobs(self, owner: str) -> list[JobInfo]:
        """Every job whose folder is in the owner's cell, by start time."""
        ...

    async def wait_job(self, owner: str, job_id: str) -> JobInfo:
        """The job once it is no longer running, however long that takes (the cell's beats
        keep the call alive); at once if it has ended or is lost."""
        ...

    def job_log(
        self, owner: str, job_id: str, offset: int = 0, follow: bool = False
    ) -> AsyncGenerator[bytes, None]:
        """The job's log from byte ``offset`` (raw bytes, as the code wrote them, with lines of
        agentcell's own: truncated, timed out, cancelled). Without ``follow``: up to its end
        now; with it: on as it grows, until the job has ended and all of it is sent. Closing
        the generator early only hangs up; the job runs on."""
        ...

    async def cancel_job(self, owner: str, job_id: str) -> JobInfo:
        """Kill the job's whole process tree; returns once all of it is dead (``cancelled``).
        A job that is no longer running is returned as it is."""
        ...

    async def append_job_log(self, owner: str, job_id: str, text: str) -> None:
        """Add text to an external job's log (``InvalidRequest`` for a job that runs code,
        ``Conflict`` once it has ended)."""
        ...

    async def end_job(self, owner: str, job_id: str, exit_code: int) -> JobInfo:
        """End an external job with the exit code; one that has ended already is returned as
        it is."""
        ...

    async def forget_job(self, owner: str, job_id: str) -> None:
        """Delete a job's folder, log and all; ``Conflict`` while it runs (cancel it first)."""
        ...

    # --- egress ----------------------------------------------------------------------------

    def egress(self, owner: str) -> AbstractAsyncContextManager[AsyncIterator[Duplex]]:
        """The owner's cell listens on its ``127.0.0.1:EGRESS_PORT`` (protocol) for the block
        (listening once entered; ``Conflict`` when another listen holds it) and the iterator
        yields each connection a program there opens, taken: the caller carries its bytes on
        and closes it, and should take the next promptly (an offer waits EGRESS_OFFER_TTL_S).
        Leaving the block stops the forwarder. Holding it does not keep the cell busy: an idle
        cell is paused or stopped as ever; when its executor goes (stopped, restarted,
        removed) the iteration ends with ``ExecutorUnreachable``, and the caller listens again
        once the cell runs."""
        ...

    # --- ports: the host's connections to servers in the cell (DESIGN §11) -----------------

    async def ports(self, owner: str) -> list[Port]:
        """The TCP ports listening in the owner's cell."""
        ...

    def connect(
        self, owner: str, port: int, *, reuse: bool = False
    ) -> AbstractAsyncContextManager[PortStream]:
        """A connection to ``port`` on the cell's loopback, raw bytes both ways, for the block
        (``PortClosed`` when nothing listens there). The cell counts as in use meanwhile.
        ``reuse``: for HTTP keep-alive, it may be one an earlier exchange ``keep()``-ed
        (``reused`` says so), and one kept now serves a later one."""
        ...

    def terminal(
        self, owner: str, terminal: str = "", cols: int = 80, rows: int = 24
    ) -> AbstractAsyncContextManager[tuple[TerminalInfo, Duplex]]:
        """Attached to one of the owner's terminals (``""``: a new ``bash -i``) for the block:
        its info, and keystrokes in / output out, ending once its shell has exited or another
        attachment took over (``NotFound`` for a terminal the cell does not have). A terminal
        outlives its attachment for a grace period (a page reload); the cell is in use while
        attached."""
        ...

    async def terminals(self, owner: str) -> list[TerminalInfo]:
        """The owner's terminals."""
        ...

    async def resize_terminal(self, owner: str, terminal: str, cols: int, rows: int) -> None: ...

    async def close_terminal(self, owner: str, terminal: str) -> TerminalInfo:
        """End a terminal and forget it; its last info holds the exit code."""
        ...

    async def start_desktop(self, owner: str) -> DesktopInfo:
        """Start the live desktop in the owner's cell unless it runs (the full image has one;
        ``InvalidRequest`` otherwise): its display and VNC port, reached with ``connect``."""
        ...

    # --- files -----------------------------------------------------------------------------

    async def list_files(self, owner: str, path: str = ".") -> list[Entry]:
        """Every entry of a folder (or the one file)."""
        ...

    async def list_page(
        self, owner: str, path: str = ".", limit: int = 0, cursor: str = ""
    ) -> Entries:
        """One page of a folder's entries by name; pass ``next_cursor`` back for the next
        (``limit`` 0: the executor's page size)."""
        ...

    async def read_bytes(self, owner: str, path: str, max_bytes: int = READ_BYTES_MAX) -> bytes:
        """A whole file; larger than ``max_bytes``: ``FileTooLarge``."""
        ...

    def read(self, owner: str, path: str, max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        """A file in chunks; ``FileTooLarge`` before any data when larger than ``max_bytes``
        (0: no limit)."""
        ...

    def zip(self, owner: str, path: str = ".", max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        """A ZIP of a folder, made inside the cell as it streams (links and special files left
        out); ``FileTooLarge`` first when its files add up to more than ``max_bytes``."""
        ...

    async def write(self, owner: str, path: str, data: bytes | AsyncIterable[bytes]) -> int:
        """Replace the file atomically (parents are made); the bytes written. An error while
        ``data`` streams leaves the old file as it was."""
        ...

    async def extract(
        self, owner: str, req: Extract, data: bytes | AsyncIterable[bytes]
    ) -> Extracted:
        """Unpack the archive ``data`` into the folder ``req.path`` (made if missing), inside
        the cell: nothing is written unless all of it passes ``req``'s checks and limits."""
        ...

    async def delete(self, owner: str, path: str, *, recursive: bool = False) -> None:
        """Delete a file, or a folder (non-empty only when ``recursive``)."""
        ...

    # --- the operator's -----------------------------------------------------------------

    async def profile(self) -> CellProfile:
        """What every cell gets: image, limits, network policy."""
        ...

    async def overview(self) -> list[CellStatus]:
        """Every cell, pooled ones (owner "") included."""
        ...

    async def reap(self) -> ReapReport:
        """Apply the idle tiers now (they also apply on their own, periodically)."""
        ...

    async def put_down(self, owner: str, tier: Literal["pause", "stop", "remove"]) -> CellState:
        """Pause, stop or remove the owner's idle cell now (its workspace kept); a cell at
        work is a Conflict, no cell a NotFound. Its next call wakes or recreates it."""
        ...

    async def health(self) -> CellHealth:
        """Whether cells can run; never raises."""
        ...

    async def counters(self) -> CellCounters:
        """Totals since start, for /metrics."""
        ...


@dataclass(frozen=True)
class CellHandle:
    """One owner's cell through a ``CellService``: the owner bound to its calls, for code that
    works in one user's cell (the agent's tools). Holds no connection and no state."""

    service: CellService
    owner: str

    @property
    def files(self) -> CellFilesHandle:
        return CellFilesHandle(self.service, self.owner)

    async def ports(self) -> list[Port]:
        return await self.service.ports(self.owner)

    async def start_desktop(self) -> DesktopInfo:
        return await self.service.start_desktop(self.owner)

    def using(self) -> AbstractAsyncContextManager[None]:
        return self.service.using(self.owner)

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
        return await self.service.exec(
            self.owner,
            code,
            language,
            context=context,
            timeout_s=timeout_s,
            output_limit=output_limit,
            env=env,
            background=background,
        )

    def stream(
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
        return self.service.stream(
            self.owner,
            code,
            language,
            context=context,
            timeout_s=timeout_s,
            output_limit=output_limit,
            env=env,
            background=background,
        )

    async def interrupt(self, context: str = "default") -> None:
        await self.service.interrupt(self.owner, context)

    async def processes(self) -> list[Process]:
        return await self.service.processes(self.owner)

    async def kill_process(self, pid: int) -> None:
        await self.service.kill_process(self.owner, pid)


@dataclass(frozen=True)
class CellFilesHandle:
    """The owner's workspace, through a ``CellService``."""

    service: CellService
    owner: str

    async def list(self, path: str = ".") -> list[Entry]:
        return await self.service.list_files(self.owner, path)

    async def page(self, path: str = ".", limit: int = 0, cursor: str = "") -> Entries:
        return await self.service.list_page(self.owner, path, limit, cursor)

    async def read_bytes(self, path: str, max_bytes: int = READ_BYTES_MAX) -> bytes:
        return await self.service.read_bytes(self.owner, path, max_bytes)

    def read(self, path: str, max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        return self.service.read(self.owner, path, max_bytes)

    def zip(self, path: str = ".", max_bytes: int = 0) -> AsyncGenerator[bytes, None]:
        return self.service.zip(self.owner, path, max_bytes)

    async def write(self, path: str, data: bytes | AsyncIterable[bytes]) -> int:
        return await self.service.write(self.owner, path, data)

    async def extract(self, req: Extract, data: bytes | AsyncIterable[bytes]) -> Extracted:
        return await self.service.extract(self.owner, req, data)

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        await self.service.delete(self.owner, path, recursive=recursive)
