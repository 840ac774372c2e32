"""Executor fixtures. ``executor`` is the client the shared cases in test_executor.py use; it is
parametrized by backend, so the same cases run against the server on the host and in a real,
hardened cell (a container made as the Docker backend makes cells, with a small memory limit).
A backend is a fixture ``<name>_executor`` that yields an object with a ``client`` attribute;
``executor_backend`` is the one a case runs against."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from agentcell.config import RUNSC_PIDS, CellLimits
from agentcell.errors import ExecutorError, ExecutorUnreachable
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import SOCKET_NAME
from agentcell.sandbox.base import CELL_UID, CellSpec
from agentcell.sandbox.docker.backend import Mounts, host_config
from tests.conftest import RUN_ID, TEST_LABEL
from tests.gvisor import apply_xfails

BACKENDS = [
    "host",
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("gvisor", marks=[pytest.mark.docker, pytest.mark.slow]),
]
START_TIMEOUT_S = 15.0
CELL_LIMITS = CellLimits(memory_mb=256, workspace_mb=0)


async def wait_ready(client: ExecutorClient, alive: Callable[[], bool]) -> None:
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            if not alive():
                pytest.fail("the executor exited at start (its log is above)")
            try:
                await client.ping()
                return
            except ExecutorUnreachable:
                await asyncio.sleep(0.02)


@dataclass
class HostExecutor:
    """The real server, run on the host as a subprocess, as ``python -m`` would run it."""

    client: ExecutorClient
    control_dir: Path
    workspace: Path
    process: subprocess.Popen[bytes]


async def start_host_executor(base: Path, *flags: str) -> HostExecutor:
    """The server with its workspace and control directory under base; flags as --warm."""
    workspace, control = base / "workspace", base / "control"
    workspace.mkdir()
    control.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "agentcell.executor.server",
        "--socket",
        str(control / SOCKET_NAME),
        "--workspace",
        str(workspace),
        *flags,
    ]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    client = ExecutorClient(control)
    await wait_ready(client, lambda: process.poll() is None)
    return HostExecutor(client, control, workspace, process)


def stop_host_executor(host: HostExecutor) -> None:
    host.process.send_signal(signal.SIGTERM)
    try:
        code = host.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        host.process.kill()
        host.process.wait()
        pytest.fail("the executor did not stop on SIGTERM")
    assert code == 0, f"the executor exited with {code} on SIGTERM"
    assert not os.path.lexists(host.control_dir / SOCKET_NAME), "socket left behind"


@pytest.fixture(scope="module")
async def host_executor(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HostExecutor]:
    host = await start_host_executor(tmp_path_factory.mktemp("executor"))
    yield host
    stop_host_executor(host)


@dataclass
class DockerExecutor:
    """The server in a cell of its own: the image's command, the backend's hardening."""

    client: ExecutorClient
    container: docker.models.containers.Container

    def alive(self) -> bool:
        self.container.reload()
        return bool(self.container.status in ("created", "running"))

    async def revive(self) -> None:
        """Start the cell again if a case took it down (under gVisor an out-of-memory kill
        does), so that one case does not fail the module's later ones."""
        try:
            await self.client.ping()
            return
        except ExecutorError:
            pass
        await asyncio.to_thread(self.container.wait, timeout=60)  # until the engine saw it die
        self.container.start()
        await wait_ready(self.client, self.alive)


async def start_cell(
    tmp_path_factory: pytest.TempPathFactory,
    client: docker.DockerClient,
    image: str,
    runtime: str,
    limits: CellLimits = CELL_LIMITS,
) -> AsyncIterator[DockerExecutor]:
    if os.geteuid() not in (0, CELL_UID):
        pytest.skip("the cell's socket is private to uid 1000: run as root or as uid 1000")
    base = tmp_path_factory.mktemp("cell")
    workspace, control = base / "workspace", base / "control"
    for path in (workspace, control):
        path.mkdir()
        if os.geteuid() == 0:
            os.chown(path, CELL_UID, CELL_UID)
    spec = CellSpec(f"exec-{RUN_ID}", "", image, limits, runtime=runtime)
    container = client.containers.run(
        image,
        detach=True,
        labels={TEST_LABEL: RUN_ID},
        **host_config(spec, Mounts(workspace, control)),
    )
    try:
        cell = DockerExecutor(ExecutorClient(control), container)
        await wait_ready(cell.client, cell.alive)
        yield cell
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def runsc_client(runsc_engine_url: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=runsc_engine_url, version="auto", timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
async def gvisor_executor(
    tmp_path_factory: pytest.TempPathFactory, runsc_client: docker.DockerClient, minimal_image: str
) -> AsyncIterator[DockerExecutor]:
    """A gVisor cell, with the pids limit the server gives runsc cells (config.RUNSC_PIDS)."""
    limits = CELL_LIMITS.model_copy(update={"pids": RUNSC_PIDS})
    async for cell in start_cell(tmp_path_factory, runsc_client, minimal_image, "runsc", limits):
        yield cell


@pytest.fixture(scope="module")
async def docker_executor(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    minimal_image: str,
) -> AsyncIterator[DockerExecutor]:
    async for cell in start_cell(tmp_path_factory, docker_client, minimal_image, ""):
        yield cell


@pytest.fixture(params=BACKENDS)
def executor_backend(request: pytest.FixtureRequest) -> HostExecutor | DockerExecutor:
    backend: HostExecutor | DockerExecutor = request.getfixturevalue(f"{request.param}_executor")
    if request.param == "gvisor":
        apply_xfails(request)
    return backend


@pytest.fixture
async def executor(executor_backend: HostExecutor | DockerExecutor) -> ExecutorClient:
    if isinstance(executor_backend, DockerExecutor):
        await executor_backend.revive()
    return executor_backend.client
