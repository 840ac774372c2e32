"""The backend seam: what the cell manager needs from wherever cells run (Docker today)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agentcell.config import CellLimits

CELL_UID = 1000  # the image's user and group; the manager gives each cell its own (``uids``)


class CellState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    REMOVED = "removed"  # no container; the workspace is kept
    DEAD = "dead"  # exited without being asked to


@dataclass(frozen=True)
class CellSpec:
    """Everything a backend needs to create one cell's container."""

    cell_id: str  # opaque, also names the workspace
    owner: str  # "" while the cell waits in the warm pool
    image: str
    workspace: Path  # host directory mounted at /workspace
    control_dir: Path  # host directory mounted at /run/agentcell (holds the executor socket)
    limits: CellLimits
    network: str = "none"
    runtime: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # extra labels (tests mark theirs)
    uid: int = CELL_UID  # the cell's own host uid (``agentcell.sandbox.uids``), also its gid


@dataclass
class ContainerInfo:
    """What a backend reports about one of our containers."""

    container_id: str
    cell_id: str
    owner: str
    state: CellState
    image: str
    created_at: float
    exit_code: int | None = None
    oom_killed: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    uid: int | None = None  # from the uid label; None for cells made before it existed


class Backend(Protocol):
    """A place to run cells. Every method blocks; the manager calls them off the event loop."""

    def ping(self) -> None: ...
    def prepare_image(self) -> str: ...
    def close(self) -> None: ...
    def create(self, spec: CellSpec) -> ContainerInfo: ...
    def start(self, container_id: str) -> None: ...
    def pause(self, container_id: str) -> None: ...
    def unpause(self, container_id: str) -> None: ...
    def stop(self, container_id: str, timeout_s: float = 2) -> None: ...
    def remove(self, container_id: str) -> None: ...
    def inspect(self, container_id: str) -> ContainerInfo | None: ...
    def list(self) -> list[ContainerInfo]: ...
    def memory_bytes(self, container_id: str) -> int | None: ...
