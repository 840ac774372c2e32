"""Exec jobs outlive their server: `agentcell serve` is killed with SIGKILL while jobs run, and
the next server re-attaches: a job that ended meanwhile has its true end and its whole log, a
job still running is followed to its end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import httpx
import pytest

from agentcell.config import Settings
from tests.api.test_server_lifecycle import AGENTCELL, free_port, serve_env
from tests.conftest import sweep_server
from tests.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ENDED = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}


@contextmanager
def serving(data: Path, minimal_image: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    cmd = [AGENTCELL, "serve", "--port", str(port), "--data-dir", str(data)]
    log = data.parent / f"serve-{port}.log"  # read it when this test fails
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=serve_env(minimal_image), stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, "the server exited"
        try:
            return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until("the server answers", up, 90)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)


def test_kill_9_of_the_server_leaves_exec_jobs_running_and_a_restart_reattaches(
    tmp_path: Path, minimal_image: str, docker_client: docker.DockerClient
) -> None:
    data = tmp_path / "data"
    short = "for i in 1 2 3 4 5 6; do echo short $i; sleep 0.3; done; exit 4"
    long = "for i in $(seq 1 20); do echo long $i; sleep 0.4; done"
    try:
        with serving(data, minimal_image) as (proc, url):
            token = (data / "admin_token").read_text().strip()
            admin = {"Authorization": f"Bearer {token}"}
            key = httpx.post(f"{url}/v1/users", json={"name": "kim"}, headers=admin).json()[
                "api_key"
            ]
            auth = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
                ids = {}
                for name, code in (("short", short), ("long", long)):
                    made = http.post(
                        "/v1/jobs", json={"kind": "exec", "language": "shell", "code": code}
                    )
                    assert made.status_code == 201, made.text
                    ids[name] = made.json()["id"]
                wait_until(
                    "both have started in the cell",
                    lambda: all(http.get(f"/v1/jobs/{i}/logs").text for i in ids.values()),
                )
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        time.sleep(2.5)  # the short job ends while no server runs
        with (
            serving(data, minimal_image) as (_, url),
            httpx.Client(base_url=url, headers=auth, timeout=60) as http,
        ):

            def state(name: str) -> str:
                return str(http.get(f"/v1/jobs/{ids[name]}").json()["state"])

            wait_until("the short job's end is known", lambda: state("short") in ENDED)
            short_job = http.get(f"/v1/jobs/{ids['short']}").json()
            assert (short_job["state"], short_job["exit_code"]) == ("failed", 4), short_job
            log = http.get(f"/v1/jobs/{ids['short']}/logs").text
            assert log == "".join(f"short {i}\n" for i in range(1, 7))
            assert state("long") == "running"
            wait_until("the long job ends", lambda: state("long") in ENDED, 60)
            assert state("long") == "succeeded"
            log = http.get(f"/v1/jobs/{ids['long']}/logs").text
            assert log == "".join(f"long {i}\n" for i in range(1, 21))
    finally:
        sweep_server(docker_client, Settings(data_dir=data))
