"""Executor fixtures. ``executor`` is the client the shared cases in test_executor.py use; it is
parametrized by backend, so a real cell can run the same cases: add a fixture that yields an
object with a ``client`` attribute (say ``docker_executor``) and its name to ``BACKENDS``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentcell.errors import ExecutorUnreachable
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import SOCKET_NAME

BACKENDS = ["host"]
START_TIMEOUT_S = 15.0


@dataclass
class HostExecutor:
    """The real server, run on the host as a subprocess, as ``python -m`` would run it."""

    client: ExecutorClient
    control_dir: Path
    workspace: Path
    process: subprocess.Popen[bytes]


async def start_host_executor(base: Path) -> HostExecutor:
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
    ]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    client = ExecutorClient(control)
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            if process.poll() is not None:
                pytest.fail(f"the executor exited at start with {process.returncode}")
            try:
                await client.ping()
                break
            except ExecutorUnreachable:
                await asyncio.sleep(0.02)
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


@pytest.fixture(params=BACKENDS)
def executor(request: pytest.FixtureRequest) -> ExecutorClient:
    backend = request.getfixturevalue(f"{request.param}_executor")
    client: ExecutorClient = backend.client
    return client
