"""The Docker engine restarts under a live server: a private dockerd that this test starts,
stops and starts again (the machine's own engine is never touched)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import docker
import httpx
import pytest

from tests.conftest import ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker

DOCKERD = shutil.which("dockerd")
START_S = 90.0


class PrivateEngine:
    """A dockerd with its own data root, exec root, pidfile and socket; no bridge, no iptables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"unix://{root}/sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.root / "dockerd.log").open("ab") as log:
            self.proc = self._spawn(log)
        deadline = time.monotonic() + START_S
        while True:
            with (
                contextlib.suppress(docker.errors.DockerException),
                contextlib.closing(self.client()) as client,
            ):
                client.ping()
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.root / "dockerd.log").read_text()[-2000:]
                pytest.fail(f"the private dockerd did not start:\n{tail}")
            time.sleep(0.2)

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        assert DOCKERD is not None
        return subprocess.Popen(
            [
                DOCKERD,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "pid"),
                "-H",
                self.url,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--containerd-namespace",
                "agentcell-test",
                "--containerd-plugins-namespace",
                "agentcell-test-plugins",
                "--shutdown-timeout",
                "5",
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        """What `systemctl restart docker` does first: SIGTERM, containers are stopped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto")


@pytest.fixture
def private_engine(minimal_image: str) -> Iterator[PrivateEngine]:
    if DOCKERD is None:
        pytest.skip("no dockerd binary on this machine: cannot start a private engine")
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root")
    # Unix socket paths are short (108 bytes): not under pytest's long tmp_path.
    engine = PrivateEngine(Path(tempfile.mkdtemp(prefix="ac-engine-", dir="/tmp")))
    try:
        engine.start()
        with subprocess.Popen(["docker", "save", minimal_image], stdout=subprocess.PIPE) as save:
            load = ["docker", "-H", engine.url, "load", "-q"]
            subprocess.run(load, stdin=save.stdout, check=True, stdout=subprocess.DEVNULL)
        assert save.returncode == 0
        yield engine
    finally:
        if engine.proc is None:
            engine.start()  # to remove what the test left in it
        with contextlib.closing(engine.client()) as client:
            for container in client.containers.list(all=True):
                container.remove(force=True)
        engine.stop()
        _unmount_under(engine.root)
        shutil.rmtree(engine.root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    with Path("/proc/self/mountinfo").open() as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(f"{root}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)


def _events(response: httpx.Response) -> Iterator[tuple[str, dict[str, object]]]:
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))


# docker-py's unix-socket connection does not close a socket whose connect failed (the engine
# is down); the garbage collector closes it, with a ResourceWarning that is not ours.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_engine_restart_is_a_503_an_error_event_and_cells_come_back(
    private_engine: PrivateEngine, make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(docker_host=private_engine.url)
    with make_server(settings) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        admin = {"Authorization": f"Bearer {live.admin_token}"}
        key = http.post("/v1/users", json={"name": "eve"}, headers=admin).json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        wrote = http.post(
            "/v1/cell/exec", json={"code": "open('keep.txt', 'w').write('kept')"}, headers=auth
        )
        assert wrote.status_code == 200, wrote.text

        events: list[tuple[str, dict[str, object]]] = []
        started = threading.Event()

        def stream() -> None:
            code = "import time\nprint('go', flush=True)\ntime.sleep(300)"
            headers = {**auth, "Accept": "text/event-stream"}
            body = {"code": code, "timeout_s": 600}
            with http.stream(
                "POST", "/v1/cell/exec", json=body, headers=headers, timeout=None
            ) as r:
                for event in _events(r):
                    events.append(event)
                    started.set()

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert started.wait(60), "the exec did not start"
        private_engine.stop()
        reader.join(timeout=120)
        assert not reader.is_alive(), "the stream did not end when the engine went away"
        kinds = [e for e, _ in events]
        assert kinds[0] == "stdout"
        assert kinds[-1] == "error", events
        error = events[-1][1]
        assert error["code"] == "docker_unavailable"
        assert "engine went away" in str(error["message"])

        health = http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["docker"] is False
        down = http.post("/v1/cell/exec", json={"code": "print(1)"}, headers=auth)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "docker_unavailable"

        private_engine.start()
        assert http.get("/healthz").status_code == 200
        read = {"code": "print(open('keep.txt').read())"}
        back = http.post("/v1/cell/exec", json=read, headers=auth)
        assert back.status_code == 200, back.text
        assert back.json()["stdout"] == "kept\n"
