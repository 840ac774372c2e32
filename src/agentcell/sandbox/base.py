"""The backend seam: what the cell manager needs from wherever cells run (Docker today).

A backend owns three things per cell: its *containers* (the unit that runs, and is recreated),
its *storage* (the workspace, which outlives every container; keyed by cell id), and its
*transport* (how the host reaches the executor inside: ``channel``). Nothing here names a host
path, a socket or an engine object, so a backend may keep them wherever it likes.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agentcell.config import CellLimits

if TYPE_CHECKING:
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
        Output,
        Pong,
        Port,
        Process,
        TerminalInfo,
    )

CELL_UID = 1000  # the image's user and group; the manager gives each cell its own (``uids``)


class CellState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    REMOVED = "removed"  # no container; the workspace is kept
    DEAD = "dead"  # exited without being asked to


@dataclass(frozen=True)
class CellSpec:
    """Everything a backend needs to create one cell's container: values only, no host paths
    (the backend knows where the cell's storage and control channel live)."""

    cell_id: str  # opaque; also names the cell's storage
    owner: str  # "" while the cell waits in the warm pool
    image: str
    limits: CellLimits
    runtime: str = ""  # an OCI runtime the backend may use (e.g. runsc); "" = its default
    labels: dict[str, str] = field(default_factory=dict)  # extra labels (tests mark theirs)
    uid: int = CELL_UID  # the cell's own host uid (``agentcell.sandbox.uids``), also its gid


@dataclass
class ContainerInfo:
    """What a backend reports about one of our containers."""

    container_id: str  # the backend's opaque id
    cell_id: str
    owner: str
    state: CellState
    image: str
    created_at: float
    exit_code: int | None = None
    oom_killed: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    uid: int | None = None  # from the uid label; None for cells made before it existed


@dataclass(frozen=True)
class BackendFeatures:
    """What a backend can do beyond the required; the manager asks before relying on it."""

    supports_pause: bool  # pause/unpause keep a cell's memory while it uses no CPU
    storage_quota: bool  # a full workspace is ENOSPC in the cell, not a full host disk


class ExecutorChannel(Protocol):
    """The host's line to one cell's executor (``executor.client.ExecutorClient`` over a Unix
    socket today). Calls raise ``ExecutorUnreachable`` when nothing answers, the executor's own
    errors (``PathNotFound``, ``FileTooLarge``...) as they come, and hold no state between
    calls: a channel can be used again after any error, and by many callers at once."""

    async def ping(self) -> Pong: ...
    async def exec(self, req: Exec) -> ExecResult: ...
    def stream(self, req: Exec) -> AsyncGenerator[Output | Exit, None]: ...
    async def interrupt(self, context: str = "default") -> None: ...
    async def list_processes(self) -> list[Process]: ...
    async def kill_process(self, pid: int) -> None: ...
    async def list(self, path: str = ".") -> list[Entry]: ...
    async def list_page(self, path: str = ".", limit: int = 0, cursor: str = "") -> Entries: ...
    async def delete(self, path: str, recursive: bool = False) -> None: ...
    def read(self, path: str, max_bytes: int = 0) -> AsyncGenerator[bytes, None]: ...
    def zip(self, path: str = ".", max_bytes: int = 0) -> AsyncGenerator[bytes, None]: ...
    async def read_bytes(self, path: str, max_bytes: int = ...) -> bytes: ...
    async def write(self, path: str, data: bytes | AsyncIterable[bytes]) -> int: ...
    async def extract(self, req: Extract, data: bytes | AsyncIterable[bytes]) -> Extracted: ...
    async def start_job(self, req: JobStart) -> JobInfo: ...
    async def job_status(self, job_id: str) -> JobInfo: ...
    async def jobs(self) -> builtins.list[JobInfo]: ...
    async def wait_job(self, job_id: str) -> JobInfo: ...
    def job_log(
        self, job_id: str, offset: int = 0, follow: bool = False
    ) -> AsyncGenerator[bytes, None]: ...
    async def cancel_job(self, job_id: str) -> JobInfo: ...
    async def append_job_log(self, job_id: str, text: str) -> None: ...
    async def end_job(self, job_id: str, exit_code: int) -> JobInfo: ...
    async def forget_job(self, job_id: str) -> None: ...
    def egress(self) -> AbstractAsyncContextManager[AsyncIterator[Duplex]]: ...
    async def list_ports(self) -> builtins.list[Port]: ...
    async def connect(self, port: int) -> Duplex: ...
    async def attach_terminal(
        self, terminal: str = "", cols: int = 80, rows: int = 24
    ) -> tuple[TerminalInfo, Duplex]: ...
    async def resize_terminal(self, terminal: str, cols: int, rows: int) -> None: ...
    async def terminals(self) -> builtins.list[TerminalInfo]: ...
    async def close_terminal(self, terminal: str) -> TerminalInfo: ...
    async def start_desktop(self) -> DesktopInfo: ...


class Backend(Protocol):
    """A place to run cells.

    Every method blocks: the manager calls them off the event loop, from several threads at
    once (never two for one cell at a time). Errors are agentcell's, never an engine client's:
    ``DockerUnavailable`` when the engine does not answer, ``ImageMissing`` when a container's
    image is gone, ``BackendError`` when the engine refuses, another ``AgentcellError`` saying
    why when storage cannot be made or mounted (Docker's: ``WorkspaceError``). A
    ``container_id`` is opaque and dies with its container; a ``cell_id`` names a cell's
    storage, which outlives its containers.
    """

    features: BackendFeatures

    # --- the engine -----------------------------------------------------------------------

    def ping(self) -> None:
        """Return when the engine answers; raise ``DockerUnavailable`` when it does not."""
        ...

    def prepare_image(self) -> str:
        """The image reference new cells run, built or fetched first when missing. Idempotent
        (cheap when the image is there)."""
        ...

    def close(self) -> None:
        """Let go of the engine connection. Idempotent; cells keep running."""
        ...

    # --- storage: the workspace (and the control channel's end on our side) ---------------

    def attach_storage(self, cell_id: str, uid: int) -> None:
        """Make the cell's storage ready for a container start: created on first use (owned
        by ``uid``), mounted, and what a previous container left of the control channel
        cleared (readiness then means a fresh executor). Every path that starts a container
        calls it first, while none of the cell's containers runs; idempotent then."""
        ...

    def detach_storage(self, cell_id: str) -> None:
        """Release what ``attach_storage`` holds (a mount), keeping every byte. Idempotent;
        only for a cell no running or paused container uses."""
        ...

    def delete_storage(self, cell_id: str) -> None:
        """Delete the cell's workspace and control channel for good. Idempotent (nothing
        there is no error); the cell's containers must be removed first."""
        ...

    def storage_ids(self) -> set[str]:
        """The cell ids that have storage (a workspace), whether attached or not."""
        ...

    def has_storage(self, cell_id: str) -> bool:
        """Whether the cell has storage (a workspace made before), attached or not."""
        ...

    # --- transport ------------------------------------------------------------------------

    def channel(self, cell_id: str) -> ExecutorChannel:
        """The line to the executor of the cell's running container. Making it does no I/O
        and cannot fail; calls on it fail with ``ExecutorUnreachable`` while nothing runs."""
        ...

    # --- containers -----------------------------------------------------------------------

    def create(self, spec: CellSpec) -> ContainerInfo:
        """Create (not start) a container for the spec; its storage may be attached while this
        runs, and must be before ``start``. Not idempotent: each call makes a new container."""
        ...

    def start(self, container_id: str) -> None:
        """Start a created or stopped container. Starting a running one is no error."""
        ...

    def pause(self, container_id: str) -> None:
        """Freeze a running container, keeping its memory. Only when ``features.supports_pause``;
        a backend without it raises ``BackendError``."""
        ...

    def unpause(self, container_id: str) -> None:
        """Thaw a paused container. As ``pause``."""
        ...

    def stop(self, container_id: str, timeout_s: float = 2) -> None:
        """Stop a running container (killed after ``timeout_s``), keeping it for ``start``.
        Stopping a stopped one is no error; a paused one must be unpaused first."""
        ...

    def remove(self, container_id: str) -> None:
        """Remove the container in any state, keeping the storage. Idempotent: a container
        that is gone already is no error."""
        ...

    def inspect(self, container_id: str) -> ContainerInfo | None:
        """What the container is now; ``None`` when it does not exist (any more)."""
        ...

    def list(self) -> list[ContainerInfo]:
        """Every container of this manager's instance, in any state."""
        ...

    def memory_bytes(self, container_id: str) -> int | None:
        """Memory the container uses now, without page cache; ``None`` when unknown (gone,
        or the engine does not say). Never raises."""
        ...

    def storage_used_bytes(self, cell_id: str) -> int | None:
        """Bytes the cell's storage holds, where it is a volume of its own (its quota);
        ``None`` otherwise. Never raises."""
        ...
