"""Cells as hardened Docker containers, each with a loop-mounted workspace and a control
directory on this host, reached over the Unix socket the executor makes there."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import LogConfig, Mount

from agentcell.config import Settings
from agentcell.errors import AgentcellError
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import CA_BUNDLE, CONTROL_DIR, SOCKET_NAME, WORKSPACE
from agentcell.progress import ProgressHook, no_progress
from agentcell.sandbox.base import BackendFeatures, CellSpec, CellState, ContainerInfo
from agentcell.sandbox.docker.errors import translated as _translated
from agentcell.sandbox.docker.images import EXECUTOR_COMMAND, ensure_image
from agentcell.sandbox.docker.seccomp import seccomp_profile
from agentcell.sandbox.docker.workspaces import Workspaces

log = logging.getLogger(__name__)

LABEL_CELL = "agentcell.cell"
LABEL_OWNER = "agentcell.owner"
LABEL_INSTANCE = "agentcell.instance"
LABEL_UID = "agentcell.uid"
LOG_MAX_SIZE = "1m"  # PID 1's stdout (docker logs) is kept to LOG_MAX_FILES files of this size
LOG_MAX_FILES = 2
# The image's CMD, plus --warm: the default python context starts with the cell, so even a new
# user's first exec finds it running (~3 MiB, shared copy-on-write with the server).
COMMAND = [*EXECUTOR_COMMAND, "--warm"]


_STATES = {
    "running": CellState.RUNNING,
    "paused": CellState.PAUSED,
    "created": CellState.STOPPED,
    "exited": CellState.STOPPED,
    "restarting": CellState.RUNNING,
    "removing": CellState.REMOVED,
    "dead": CellState.DEAD,
}


# With this many cores or more, cpuset "auto" keeps cells off core 0, for the server and dockerd.
AUTO_CPUSET_MIN_CORES = 4


def cell_cpuset(setting: str, engine_cpus: int) -> str:
    """The cells' cpuset: "auto" leaves core 0 free on hosts big enough to spare it. On fewer
    cores, pinning would take half or more of the machine from cells, so they get every core."""
    if setting != "auto":
        return setting
    return f"1-{engine_cpus - 1}" if engine_cpus >= AUTO_CPUSET_MIN_CORES else ""


@dataclass(frozen=True)
class Mounts:
    """The host directories a cell's container binds."""

    workspace: Path  # at /workspace
    control_dir: Path  # at /run/agentcell: holds the executor's socket
    ca_bundle: Path | None = None  # read-only over the system's CA list: it trusts the egress CA


def host_config(spec: CellSpec, mounts: Mounts, engine_cpus: int = 0) -> dict[str, Any]:
    """The hardening every cell gets; nothing here is pass-through from users. engine_cpus is
    the engine host's core count (0 = unknown: "auto" then pins nothing)."""
    lim = spec.limits
    mib = 1024 * 1024
    config: dict[str, Any] = {
        "user": f"{spec.uid}:{spec.uid}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges", f"seccomp={seccomp_profile()}"],
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={lim.tmp_mb}m,mode=1777"},
        "shm_size": lim.shm_mb * mib,
        "mem_limit": lim.memory_mb * mib,
        "memswap_limit": lim.memory_mb * mib,  # no swap on top of the memory limit
        "nano_cpus": int(lim.cpus * 1e9),
        "cpu_shares": lim.cpu_shares,
        "pids_limit": lim.pids,
        "ipc_mode": "private",
        "init": True,  # tini as PID 1 reaps orphans; without it zombies exhaust the pids limit
        # No interface but lo: what leaves goes through the egress forwarder (DESIGN §10).
        "network_mode": "none",
        "mounts": [
            Mount(WORKSPACE, str(mounts.workspace), type="bind"),
            Mount(CONTROL_DIR, str(mounts.control_dir), type="bind"),
            *(
                [Mount(CA_BUNDLE, str(mounts.ca_bundle), type="bind", read_only=True)]
                if mounts.ca_bundle
                else []
            ),
        ],
        # No passwd entry has the cell's uid: tools that want a name read these.
        "environment": {"HOME": "/tmp", "USER": "cell", "LOGNAME": "cell"},
        "log_config": LogConfig(
            type="json-file", config={"max-size": LOG_MAX_SIZE, "max-file": str(LOG_MAX_FILES)}
        ),
        "stop_signal": "SIGTERM",
    }
    if spec.runtime:
        config["runtime"] = spec.runtime
    config["blkio_weight"] = lim.blkio_weight
    cpuset = cell_cpuset(lim.cpuset, engine_cpus)
    if cpuset:
        config["cpuset_cpus"] = cpuset
    return config


class DockerBackend:
    """Implements ``agentcell.sandbox.base.Backend`` on a Docker engine. A cell's storage is a
    workspace under ``data_dir/workspaces`` and a control directory under ``data_dir/cells``."""

    def __init__(self, settings: Settings, progress: ProgressHook = no_progress) -> None:
        self.settings = settings
        self.instance = settings.instance
        self.progress = progress
        self._base_url = settings.docker_host or "unix:///var/run/docker.sock"
        self._client: docker.DockerClient | None = None
        data = settings.data_dir
        self.workspaces = Workspaces(data / "workspaces", settings.limits.workspace_mb)
        self.control_root = data / "cells"
        self.control_root.mkdir(exist_ok=True, mode=0o700)
        self.features = BackendFeatures(supports_pause=True, storage_quota=self.workspaces.enforced)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            with _translated("connect"):
                self._client = docker.DockerClient(
                    base_url=self._base_url, version="auto", max_pool_size=64, timeout=120
                )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @functools.cached_property
    def engine_cpus(self) -> int:
        """Cores of the engine's host (not ours: DOCKER_HOST may be another machine)."""
        with _translated("read the engine's core count"):
            return int(self.client.info().get("NCPU", 0))

    def ping(self) -> None:
        with _translated("ping the engine"):
            self.client.ping()

    def prepare_image(self) -> str:
        """The image cells run: the configured tag, or our profile image, built when missing."""
        if self.settings.image:
            return self.settings.image
        return ensure_image(
            self.client,
            self.settings.image_profile,
            self.progress,
            mirror=self.settings.debian_mirror or None,
        )

    # --- storage and transport ------------------------------------------------------------

    def attach_storage(self, cell_id: str, uid: int) -> None:
        self.workspaces.ensure(cell_id, uid)
        self._control_dir(cell_id, uid)  # clears a stale socket: readiness = a fresh server

    def storage_used_bytes(self, cell_id: str) -> int | None:
        return self.workspaces.used_bytes(cell_id)

    def detach_storage(self, cell_id: str) -> None:
        self.workspaces.unmount(cell_id)

    def delete_storage(self, cell_id: str) -> None:
        self.workspaces.delete(cell_id)
        control = self.control_root / cell_id
        with contextlib.suppress(FileNotFoundError):
            (control / SOCKET_NAME).unlink()
        with contextlib.suppress(FileNotFoundError, OSError):
            control.rmdir()

    def storage_ids(self) -> set[str]:
        return self.workspaces.ids()

    def has_storage(self, cell_id: str) -> bool:
        return self.workspaces.exists(cell_id)

    def channel(self, cell_id: str) -> ExecutorClient:
        return ExecutorClient(self.control_root / cell_id)

    def mounts(self, cell_id: str) -> Mounts:
        bundle = self.settings.ca_bundle_path
        return Mounts(
            self.workspaces.path(cell_id),
            self.control_root / cell_id,
            bundle if bundle.is_file() else None,
        )

    def _control_dir(self, cell_id: str, uid: int) -> Path:
        """Host side of /run/agentcell. The cell can write here; we only unlink and connect."""
        path = self.control_root / cell_id
        path.mkdir(exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            os.chown(path, uid, uid)
        with contextlib.suppress(FileNotFoundError):
            (path / SOCKET_NAME).unlink()  # unlink never follows a link
        return path

    # --- containers -----------------------------------------------------------------------

    def create(self, spec: CellSpec) -> ContainerInfo:
        mounts = self.mounts(spec.cell_id)
        mounts.workspace.mkdir(exist_ok=True)  # Docker checks bind sources exist at create time
        self._control_dir(spec.cell_id, spec.uid)
        config = host_config(spec, mounts, self.engine_cpus)
        labels = {
            **spec.labels,
            LABEL_CELL: spec.cell_id,
            LABEL_OWNER: spec.owner,
            LABEL_INSTANCE: self.instance,
            LABEL_UID: str(spec.uid),
        }
        with _translated(f"create cell {spec.cell_id}"):
            container = self.client.containers.create(
                spec.image,
                COMMAND,
                name=f"agentcell-{self.instance}-{spec.cell_id}",
                labels=labels,
                detach=True,
                **config,
            )
        return self._info(container.attrs)

    def start(self, container_id: str) -> None:
        with _translated("start a cell"):
            self.client.api.start(container_id)

    def pause(self, container_id: str) -> None:
        with _translated("pause a cell"):
            self.client.api.pause(container_id)

    def unpause(self, container_id: str) -> None:
        with _translated("unpause a cell"):
            self.client.api.unpause(container_id)

    def stop(self, container_id: str, timeout_s: float = 2) -> None:
        with _translated("stop a cell"):
            self.client.api.stop(container_id, timeout=int(timeout_s))

    def remove(self, container_id: str) -> None:
        with _translated("remove a cell"), contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True, v=True)

    def inspect(self, container_id: str) -> ContainerInfo | None:
        with _translated("inspect a cell"), contextlib.suppress(docker.errors.NotFound):
            return self._info(self.client.api.inspect_container(container_id))
        return None

    def list(self) -> list[ContainerInfo]:
        with _translated("list cells"):
            found = self.client.api.containers(
                all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"}
            )
            infos = (self.inspect(c["Id"]) for c in found)
            return [i for i in infos if i is not None]

    def memory_bytes(self, container_id: str) -> int | None:
        """Memory in use without the page cache, as ``docker stats`` counts it: read from the
        container's cgroup when the engine is on this host (microseconds), else asked of the
        engine (a second or more)."""
        if (local := cgroup_memory_bytes(container_id)) is not None:
            return local
        with contextlib.suppress(AgentcellError, KeyError, TypeError):
            with _translated("read cell stats"):
                stats = self.client.api.stats(container_id, stream=False)
            mem = stats["memory_stats"]
            cache = mem.get("stats", {}).get(
                "total_inactive_file", mem.get("stats", {}).get("cache", 0)
            )
            return int(mem["usage"]) - int(cache)
        return None

    @staticmethod
    def _info(attrs: dict[str, Any]) -> ContainerInfo:
        state = attrs["State"]
        labels = attrs["Config"].get("Labels") or {}
        status = state.get("Status", "dead")
        cell_state = _STATES.get(status, CellState.DEAD)
        exit_code = state.get("ExitCode")
        return ContainerInfo(
            container_id=attrs["Id"],
            cell_id=labels.get(LABEL_CELL, ""),
            owner=labels.get(LABEL_OWNER, ""),
            state=cell_state,
            image=attrs["Config"].get("Image", ""),
            created_at=_timestamp(attrs.get("Created", "")),
            exit_code=exit_code if status in ("exited", "dead") else None,
            oom_killed=bool(state.get("OOMKilled")),
            labels=labels,
            uid=int(labels[LABEL_UID]) if labels.get(LABEL_UID, "").isdigit() else None,
        )


def _timestamp(docker_time: str) -> float:
    # Docker prints nanoseconds; fromisoformat takes at most microseconds.
    head, _, frac = docker_time.rstrip("Z").partition(".")
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(f"{head}.{frac[:6] or '0'}+00:00").timestamp()
    return 0.0


# Where the engine puts a container's cgroup: (directory, usage file, page-cache key in
# memory.stat), cgroup v2 (cgroupfs and systemd drivers), then v1.
_CGROUPS = (
    ("/sys/fs/cgroup/docker/{id}", "memory.current", "inactive_file"),
    ("/sys/fs/cgroup/system.slice/docker-{id}.scope", "memory.current", "inactive_file"),
    ("/sys/fs/cgroup/memory/docker/{id}", "memory.usage_in_bytes", "total_inactive_file"),
)


def cgroup_memory_bytes(container_id: str) -> int | None:
    """A container's memory less its inactive page cache, from its cgroup, or None."""
    if not container_id.isalnum():
        return None
    for directory, usage_file, cache_key in _CGROUPS:
        folder = Path(directory.format(id=container_id))
        try:
            usage = int((folder / usage_file).read_text())
            stat = (folder / "memory.stat").read_text().split("\n")
        except (OSError, ValueError):
            continue
        cache = next((int(line.split()[1]) for line in stat if line.startswith(cache_key + " ")), 0)
        return usage - cache
    return None
