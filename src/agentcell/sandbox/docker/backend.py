"""Cells as hardened Docker containers. docker-py errors become agentcell errors here only."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import docker
import docker.errors
import requests
from docker.types import LogConfig, Mount

from agentcell.config import Settings
from agentcell.errors import AgentcellError, BackendError, DockerUnavailable, ImageMissing
from agentcell.executor.protocol import CONTROL_DIR, WORKSPACE
from agentcell.progress import ProgressHook, no_progress
from agentcell.sandbox.base import CellSpec, CellState, ContainerInfo
from agentcell.sandbox.docker.images import EXECUTOR_COMMAND, ensure_image
from agentcell.sandbox.docker.seccomp import seccomp_profile

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


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Turn docker-py's errors into ours, saying what we were doing."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing(
            f"sandbox image missing while trying to {action}: {exc.explanation}",
            hint="run: agentcell image build",
        ) from exc
    except docker.errors.APIError as exc:
        raise BackendError(f"Docker refused to {action}: {exc.explanation or exc}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        # Also when the engine's socket went away. docker-py leaves the socket of a failed
        # connect to the traceback's frames: drop them, so it is closed now, not at some GC.
        _drop_tracebacks(exc)
        raise DockerUnavailable(f"cannot reach Docker to {action}: {exc}") from exc


def _drop_tracebacks(exc: BaseException | None) -> None:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


# With this many cores or more, cpuset "auto" keeps cells off core 0, for the server and dockerd.
AUTO_CPUSET_MIN_CORES = 4


def cell_cpuset(setting: str, engine_cpus: int) -> str:
    """The cells' cpuset: "auto" leaves core 0 free on hosts big enough to spare it. On fewer
    cores, pinning would take half or more of the machine from cells, so they get every core."""
    if setting != "auto":
        return setting
    return f"1-{engine_cpus - 1}" if engine_cpus >= AUTO_CPUSET_MIN_CORES else ""


def host_config(spec: CellSpec, engine_cpus: int = 0) -> dict[str, Any]:
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
        "network_mode": spec.network,
        "mounts": [
            Mount(WORKSPACE, str(spec.workspace), type="bind"),
            Mount(CONTROL_DIR, str(spec.control_dir), type="bind"),
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
    """Implements ``agentcell.sandbox.base.Backend`` on a Docker engine."""

    def __init__(self, settings: Settings, progress: ProgressHook = no_progress) -> None:
        self.settings = settings
        self.instance = settings.instance
        self.progress = progress
        self._base_url = settings.docker_host or "unix:///var/run/docker.sock"
        self._client: docker.DockerClient | None = None

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

    def create(self, spec: CellSpec) -> ContainerInfo:
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
                **host_config(spec, self.engine_cpus),
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
        """Memory in use without the page cache, as ``docker stats`` counts it."""
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
