"""Our seccomp profile: Docker's default without io_uring, checked in real containers too."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import docker
import pytest

from agentcell.sandbox.docker.seccomp import DEFAULT_PROFILE, DENIED, seccomp_profile
from tests.conftest import RUN_ID, TEST_LABEL

# sha256 of moby's profiles/seccomp/default.json as vendored: the file stays pristine.
VENDORED_SHA256 = "407eb7395737ab4488f39d7b99054e38c74afa64cdf0d4f9acd7e370f8622617"

# io_uring_setup is 425 on x86_64 and aarch64 alike. Prints "<result> <errno>".
PROBE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
print(libc.syscall(425, 4, params), ctypes.get_errno())
"""


def allowed(profile: dict[str, object]) -> set[str]:
    rules = profile["syscalls"]
    assert isinstance(rules, list)
    return {n for r in rules if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}


def test_vendored_profile_is_pristine() -> None:
    assert hashlib.sha256(DEFAULT_PROFILE.read_bytes()).hexdigest() == VENDORED_SHA256
    assert allowed(json.loads(DEFAULT_PROFILE.read_text())) >= DENIED


def test_profile_is_json_that_denies_by_default() -> None:
    profile = json.loads(seccomp_profile())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == errno.EPERM


def test_io_uring_is_not_allowed_and_the_rest_is_kept() -> None:
    ours = allowed(json.loads(seccomp_profile()))
    upstream = allowed(json.loads(DEFAULT_PROFILE.read_text()))
    assert not ours & DENIED
    assert ours == upstream - DENIED
    assert {"read", "write", "openat", "clone", "execve"} <= ours


def test_profile_is_cached() -> None:
    assert seccomp_profile() is seccomp_profile()


# --- in real containers -------------------------------------------------------------------------


@pytest.fixture
def image(
    docker_client: docker.DockerClient, minimal_image: str
) -> tuple[docker.DockerClient, str]:
    return docker_client, minimal_image


def probe(client: docker.DockerClient, image: str, security_opt: list[str]) -> tuple[int, int]:
    container = client.containers.run(
        image,
        ["python3", "-c", PROBE],
        detach=True,
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=security_opt,
        labels={TEST_LABEL: RUN_ID},
    )
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0, container.logs().decode()
        result, err = container.logs(stdout=True, stderr=False).decode().split()
        return int(result), int(err)
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_io_uring_setup_is_refused_with_our_profile(image: tuple[docker.DockerClient, str]) -> None:
    options = [f"seccomp={seccomp_profile()}", "no-new-privileges"]
    result, err = probe(*image, options)
    assert result == -1
    assert err in (errno.EPERM, errno.ENOSYS)


@pytest.mark.docker
def test_engine_default_profile_lets_io_uring_through(
    image: tuple[docker.DockerClient, str],
) -> None:
    """The reason for our profile: this engine's default does not stop io_uring."""
    client, _ = image
    if int(client.version()["Version"].split(".")[0]) >= 25:
        pytest.skip("Docker 25 and later deny io_uring in their default profile")
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    if disabled.exists() and disabled.read_text().strip() != "0":
        pytest.skip("the host kernel disables io_uring itself (kernel.io_uring_disabled)")
    result, err = probe(*image, ["no-new-privileges"])
    assert err != errno.EPERM, (result, err)
