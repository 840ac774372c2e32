"""Executor fixtures. ``executor`` is the client the shared cases in test_executor.py use; it is
parametrized by backend, so the same cases run against the server on the host and in a real,
hardened cell (a container made as the Docker backend makes cells, with a small memory limit).
A backend is a fixture ``<name>_executor`` that yields an object with a ``client`` attribute."""

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

from agentcell.config import CellLimits
from agentcell.errors import ExecutorUnreachable
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import SOCKET_NAME
from agentcell.sandbox.base import CELL_UID, CellSpec
from agentcell.sandbox.docker.backend import Mounts, host_config
from tests.conftest import RUN_ID, TEST_LABEL
from tests.engines import private_engine

BACKENDS = [
    "host",
    pytest.param("docker", marks=pytest.mark.docker),
]
START_TIMEOUT_S = 15.0


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


RUNSC = "/usr/bin/runsc"
# Cells have no network (runsc refuses Docker's "none" netns unless told); the executor binds its
# socket on a host mount, which gVisor allows only with --host-uds=create.
RUNSC_RUNTIME = {"path": RUNSC, "runtimeArgs": ["--network=none", "--host-uds=create"]}


@pytest.fixture(scope="module")
def runsc_client(minimal_image: str) -> Iterator[docker.DockerClient]:
    """A private engine with gVisor registered (the machine's engine is never reconfigured)."""
    if not Path(RUNSC).exists():
        pytest.skip(
            "gVisor needs /usr/bin/runsc: AGENTCELL_RUNTIME=runsc scripts/setup installs it"
        )
    with private_engine(minimal_image, {"runtimes": {"runsc": RUNSC_RUNTIME}}) as engine:
        client = engine.client()
        try:
            client.containers.run(minimal_image, ["true"], entrypoint=[], runtime="runsc",
                                  network_mode="none", remove=True)  # fmt: skip
        except docker.errors.DockerException as exc:
            pytest.skip(f"runsc cannot run containers here: {exc}")
        yield client
        client.close()


async def start_cell(
    tmp_path_factory: pytest.TempPathFactory, client: docker.DockerClient, image: str, runtime: str
) -> AsyncIterator[DockerExecutor]:
    if os.geteuid() not in (0, CELL_UID):
        pytest.skip("the cell's socket is private to uid 1000: run as root or as uid 1000")
    base = tmp_path_factory.mktemp("cell")
    workspace, control = base / "workspace", base / "control"
    for path in (workspace, control):
        path.mkdir()
        if os.geteuid() == 0:
            os.chown(path, CELL_UID, CELL_UID)
    limits = CellLimits(memory_mb=256, workspace_mb=0)
    spec = CellSpec(f"exec-{RUN_ID}", "", image, limits, runtime=runtime)
    container = client.containers.run(
        image,
        detach=True,
        labels={TEST_LABEL: RUN_ID},
        **host_config(spec, Mounts(workspace, control)),
    )
    try:
        executor = ExecutorClient(control)

        def alive() -> bool:
            container.reload()
            return bool(container.status in ("created", "running"))

        await wait_ready(executor, alive)
        yield DockerExecutor(executor, container)
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
async def gvisor_executor(
    tmp_path_factory: pytest.TempPathFactory, runsc_client: docker.DockerClient, minimal_image: str
) -> AsyncIterator[DockerExecutor]:
    async for cell in start_cell(tmp_path_factory, runsc_client, minimal_image, "runsc"):
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
def executor(request: pytest.FixtureRequest) -> ExecutorClient:
    backend = request.getfixturevalue(f"{request.param}_executor")
    client: ExecutorClient = backend.client
    return client
