"""A server's start and end as the host sees them: a reboot keeps every file, a busy port
fails before anything is made, and `agentcell serve` serves from the socket it bound first."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import pytest

from agentcell.config import Settings
from agentcell.sandbox.docker.backend import LABEL_INSTANCE
from agentcell.sandbox.docker.workspaces import Workspaces
from tests.conftest import RUN_ID, TEST_LABEL, Live, ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker

AGENTCELL = str(Path(sys.executable).with_name("agentcell"))


def mount_points() -> set[str]:
    with Path("/proc/self/mountinfo").open() as f:
        return {line.split()[4] for line in f}


def reboot(client: docker.DockerClient, settings: Settings) -> Workspaces:
    """What a reboot does to a stopped server's cells: containers stop, loop mounts vanish."""
    label = {"label": f"{LABEL_INSTANCE}={settings.instance}"}
    for container in client.containers.list(filters=label):
        container.stop(timeout=2)
    workspaces = Workspaces(settings.data_dir / "workspaces", settings.limits.workspace_mb)
    for ws_id in workspaces.ids():
        workspaces.unmount(ws_id)
    return workspaces


@pytest.mark.skipif(os.geteuid() != 0, reason="loop-mounted workspaces need root")
def test_every_file_survives_a_reboot_and_nothing_lands_on_the_host(
    make_server: ServerFactory, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    settings = make_settings()
    write = "mkdir -p d && for i in $(seq 1 20); do echo $i > d/f$i; done && echo top > top.txt"
    with make_server(settings) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        admin = {"Authorization": f"Bearer {live.admin_token}"}
        key = http.post("/v1/users", json={"name": "ruth"}, headers=admin).json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        made = http.post("/v1/cell/exec", json={"code": write, "language": "shell"}, headers=auth)
        assert made.json()["exit_code"] == 0, made.text
    workspaces = reboot(docker_client, settings)
    (ws_id,) = workspaces.ids()
    assert str(workspaces.path(ws_id)) not in mount_points()
    assert list(workspaces.path(ws_id).iterdir()) == []

    listing = "ls d | sort -V | tr '\\n' ' '; cat top.txt d/f7; echo after > after.txt"
    with make_server(settings) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        auth = {"Authorization": f"Bearer {key}"}
        seen = http.post("/v1/cell/exec", json={"code": listing, "language": "shell"}, headers=auth)
        assert seen.status_code == 200, seen.text
        expected = " ".join(f"f{i}" for i in range(1, 21))
        assert seen.json()["stdout"] == f"{expected} top\n7\n"
    reboot(docker_client, settings)
    assert list(workspaces.path(ws_id).iterdir()) == []  # every write went into the image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(minimal_image: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCELL_")}
    env.update(
        AGENTCELL_IMAGE=minimal_image,
        AGENTCELL_POOL_SIZE="1",
        AGENTCELL_LIMITS__MEMORY_MB="256",
        AGENTCELL_LIMITS__WORKSPACE_MB="64",
        AGENTCELL_LABELS=json.dumps({TEST_LABEL: RUN_ID}),
    )
    return env


def test_serve_on_a_busy_port_fails_first_and_leaves_nothing(
    tmp_path: Path, minimal_image: str, docker_client: docker.DockerClient
) -> None:
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [AGENTCELL, "serve", "--port", str(port), "--data-dir", str(data)]
        proc = subprocess.run(
            cmd, env=serve_env(minimal_image), capture_output=True, text=True, timeout=120
        )
    assert proc.returncode == 1
    assert f"port {port}" in proc.stderr
    assert "--port" in proc.stderr
    assert "AGENTCELL_PORT" in proc.stderr
    assert "admin token" not in proc.stdout  # no token made, none printed
    assert not (data / "admin_token").exists()
    instance = Settings(data_dir=data).instance
    label = {"label": f"{LABEL_INSTANCE}={instance}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert not any(point.startswith(str(data)) for point in mount_points())


@pytest.mark.parametrize("access_log", [False, True])
def test_serve_serves_and_its_stop_leaves_no_pool_cell_or_mount(
    tmp_path: Path, minimal_image: str, docker_client: docker.DockerClient, access_log: bool
) -> None:
    data = tmp_path / "data"
    port = free_port()
    cmd = [AGENTCELL, "serve", "--port", str(port), "--data-dir", str(data)]
    cmd += ["--access-log"] if access_log else []
    instance = Settings(data_dir=data).instance
    label = {"label": f"{LABEL_INSTANCE}={instance}"}
    with subprocess.Popen(
        cmd, env=serve_env(minimal_image), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while not docker_client.containers.list(filters=label):  # the pool's cell
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "no pool cell started"
                time.sleep(0.1)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        printed = proc.stdout.read().decode() if proc.stdout else ""
    assert ("GET /healthz HTTP/1.1" in printed) is access_log  # a line per request when asked
    assert docker_client.containers.list(all=True, filters=label) == []
    assert not any(point.startswith(str(data)) for point in mount_points())


def test_healthz_says_whether_workspace_quotas_are_enforced(server: Live) -> None:
    health = httpx.get(f"{server.url}/healthz", timeout=30).json()
    assert health["workspace_quota"] is (os.geteuid() == 0)
