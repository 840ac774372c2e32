"""A fresh executor on the workspace of one that ran jobs (the host's, stopped or killed; a
restarted cell): an ended job keeps its true end and whole log, one that was running is lost, a
status the cell's code spoilt reads as lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from agentcell.errors import Conflict
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import JOBS_DIR, SOCKET_NAME, JobInfo, JobStart
from tests.executor.conftest import DockerExecutor, wait_ready
from tests.executor.test_jobs import jid, log_of, run, workdir
from tests.waiting import until


class Server:
    """A host-run executor on a given workspace and control directory, stopped and started
    again at will (the module's shared one must not be)."""

    def __init__(self, base: Path) -> None:
        self.workspace, self.control = base / "workspace", base / "control"
        self.workspace.mkdir()
        self.control.mkdir()
        self.client = ExecutorClient(self.control)
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        cmd = [sys.executable, "-m", "agentcell.executor.server"]
        cmd += ["--socket", str(self.control / SOCKET_NAME), "--workspace", str(self.workspace)]
        process = self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        await wait_ready(self.client, lambda: process.poll() is None)

    def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop(signal.SIGTERM)


async def two_jobs(client: ExecutorClient, d: str) -> tuple[JobInfo, JobInfo, JobInfo]:
    """An ended job, an ended one whose status the cell's code spoils, and a running one."""
    ended, _ = await run(client, "echo 'all of it'; exit 5")
    spoilt, _ = await run(client, "echo spoilt")
    await client.write(f"{JOBS_DIR}/{spoilt.id}/status.json", b'{"state": "exited"}')
    running = await client.start_job(
        JobStart(jid(), "echo $$ > job.pid; echo on; sleep 300", cwd=d)
    )
    async with aclosing(client.job_log(running.id, follow=True)) as chunks:
        assert await anext(chunks) == b"on\n"
    return ended, spoilt, running


async def assert_recovered(client: ExecutorClient, jobs: tuple[JobInfo, JobInfo, JobInfo]) -> None:
    ended, spoilt, running = jobs
    assert await client.job_status(ended.id) == ended  # its true end, kept while nobody asked
    assert await log_of(client, ended.id) == b"all of it\n"
    lost = await client.job_status(running.id)
    assert (lost.state, lost.exit_code, lost.started_at) == ("lost", None, running.started_at)
    assert lost.log_bytes == 3
    assert await log_of(client, running.id) == b"on\n"
    assert await client.wait_job(running.id) == lost  # at once: it does not run here
    assert await client.cancel_job(running.id) == lost
    with pytest.raises(Conflict, match="lost"):
        await client.append_job_log(running.id, "x")
    bad = await client.job_status(spoilt.id)
    assert (bad.state, bad.started_at) == ("lost", spoilt.started_at)
    listed = {job.id: job for job in await client.jobs()}
    assert listed == {ended.id: ended, running.id: lost, spoilt.id: bad}
    for job in jobs:
        await client.forget_job(job.id)
    assert await client.jobs() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_a_fresh_executor_knows_ended_jobs_and_lost_ones(
    server: Server, sig: signal.Signals
) -> None:
    await server.start()
    (server.workspace / "d").mkdir()
    jobs = await two_jobs(server.client, "d")
    server.stop(sig)
    pid = int((server.workspace / "d" / "job.pid").read_text())
    if sig == signal.SIGTERM:  # the executor's shutdown kills its jobs
        await until("the job's shell is gone", lambda: not alive(pid))
    else:  # the host's executor left it running (in a cell, the cell's end takes it)
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # its holder's group
    await server.start()
    await assert_recovered(server.client, jobs)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.docker
async def test_a_restarted_cell_knows_ended_jobs_and_lost_ones(
    docker_executor: DockerExecutor,
) -> None:
    client = docker_executor.client
    d = await workdir(client)
    jobs = await two_jobs(client, d)
    await asyncio.to_thread(docker_executor.container.restart, timeout=10)
    await wait_ready(client, docker_executor.alive)
    await assert_recovered(client, jobs)
