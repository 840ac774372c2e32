"""Private Docker engines for tests that must stop an engine or register a runtime: the
machine's own engine is never restarted or reconfigured.

Each engine has its own data root, exec root, pidfile, socket and containerd namespace, and
runs in a network namespace of its own: a dockerd started with ``--bridge=none`` in the
host's namespace deletes the host's ``docker0`` bridge (moby's removeDefaultBridgeInterface),
which breaks the machine's engine for everyone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

DOCKERD = shutil.which("dockerd")
START_S = 90.0


def skip_unless_possible() -> None:
    if DOCKERD is None:
        pytest.skip("no dockerd binary on this machine: cannot start a private engine")
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root")
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("a private dockerd needs ip (iproute2) and nsenter (util-linux)")


class PrivateEngine:
    """A dockerd of the test's own; ``start``/``stop`` may be called again (a restart)."""

    def __init__(self, daemon_config: dict[str, Any] | None = None) -> None:
        # Unix socket paths are short (108 bytes): not under pytest's long tmp_path.
        self.root = Path(tempfile.mkdtemp(prefix="ac-engine-", dir="/tmp"))
        self.url = f"unix://{self.root}/sock"
        self.netns = f"ac-engine-{secrets.token_hex(4)}"
        self.config = self.root / "daemon.json"
        self.config.write_text(json.dumps(daemon_config or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(["ip", "netns", "add", self.netns], check=True)

    def start(self) -> None:
        assert DOCKERD is not None
        cmd = [
            "nsenter", f"--net=/run/netns/{self.netns}", "--",
            DOCKERD, "--config-file", str(self.config),
            "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "pid"), "-H", self.url,
            "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--containerd-namespace", f"{self.netns}",
            "--containerd-plugins-namespace", f"{self.netns}-plugins",
            "--shutdown-timeout", "5",
        ]  # fmt: skip
        with (self.root / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_S
        while True:
            # A raw connect first: docker-py leaves the socket of a failed connect unclosed.
            if self._accepts():
                with (
                    contextlib.suppress(docker.errors.DockerException),
                    contextlib.closing(self.client()) as client,
                ):
                    client.ping()
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the private dockerd did not start:\n{self.log_tail()}")
            time.sleep(0.2)

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(self.url.removeprefix("unix://"))
            except OSError:
                return False
            return True

    def log_tail(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")[-2000:]

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

    def client(self, timeout: int = 120) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=timeout)

    def load(self, image: str) -> None:
        """Copy an image of the machine's engine into this one."""
        with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
            load = ["docker", "-H", self.url, "load", "-q"]
            subprocess.run(load, stdin=save.stdout, check=True, stdout=subprocess.DEVNULL)
        assert save.returncode == 0, f"docker save {image} failed"

    def destroy(self) -> None:
        """Remove what the tests left in it, stop it, and remove its files and namespace."""
        try:
            if self.proc is None:
                self.start()
            with contextlib.closing(self.client()) as client:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
        finally:
            self.stop()
            _unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            subprocess.run(["ip", "netns", "delete", self.netns], check=False)


@contextlib.contextmanager
def private_engine(
    image: str, daemon_config: dict[str, Any] | None = None
) -> Iterator[PrivateEngine]:
    """A started private engine holding ``image``; destroyed at the end."""
    skip_unless_possible()
    engine = PrivateEngine(daemon_config)
    try:
        engine.start()
        engine.load(image)
        yield engine
    finally:
        engine.destroy()


def _unmount_under(root: Path) -> None:
    with Path("/proc/self/mountinfo").open() as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(f"{root}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
