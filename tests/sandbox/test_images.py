"""The sandbox image builder, against the real Docker engine (no mocks)."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import docker
import docker.errors
import pytest

from agentcell.cli import main
from agentcell.errors import ImageBuildFailed, InvalidRequest
from agentcell.progress import ProgressEvent
from agentcell.sandbox.docker.images import (
    EXECUTOR_DIR,
    EXECUTOR_FILES,
    LABEL_INPUTS,
    LABEL_KIND,
    LABEL_PROFILE,
    ensure_image,
    image_tag,
)
from agentcell.sandbox.docker.profiles import Profile, load_profile
from agentcell.sandbox.docker.rootfs import debian_mirror, make_rootfs
from tests.conftest import RUN_ID, TEST_LABEL

BROWSER_CHECK = """
import matplotlib, numpy, pandas, playwright, requests
from playwright.sync_api import sync_playwright

with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-dev-shm-usage"],
    )
    page = browser.new_page()
    page.goto("data:text/html,<title>cell</title><p id=x>hello from chromium</p>")
    print(page.title(), "|", page.inner_text("#x"))
    browser.close()
"""


def run(client: docker.DockerClient, image: str, cmd: list[str], **kwargs: object) -> str:
    """Run ``cmd`` to completion in a fresh, labelled, network-less container; return output."""
    container = client.containers.run(
        image, cmd, detach=True, network_mode="none", labels={TEST_LABEL: RUN_ID}, **kwargs
    )
    try:
        status = container.wait(timeout=120)
        output: str = container.logs(stdout=True, stderr=True).decode()
        assert status["StatusCode"] == 0, output
        return output
    finally:
        container.remove(force=True)


# --- recipe and configuration: no Docker needed ---------------------------------------------


def test_tag_names_profile_and_hash_of_inputs() -> None:
    tag = image_tag("minimal")
    repo, _, rest = tag.partition(":")
    profile, _, digest = rest.rpartition("-")
    assert (repo, profile, len(digest)) == ("agentcell-sandbox", "minimal", 12)
    assert image_tag("minimal") == tag  # stable
    assert image_tag("full") != tag


def test_full_profile_extends_minimal() -> None:
    minimal, full = load_profile("minimal"), load_profile("full")
    assert set(minimal.debian) < set(full.debian)
    assert {"python3", "chromium", "python3-pandas"} <= set(full.debian)
    assert any(req.startswith("playwright") for req in full.pip)
    assert minimal.pip == ()


def test_unknown_profile_says_which_exist() -> None:
    with pytest.raises(InvalidRequest) as err:
        load_profile("huge")
    assert "minimal" in err.value.hint
    assert "full" in err.value.hint


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "# the main archive\nTypes: deb deb-src\nURIs: http://archive.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main contrib\n"
    )
    assert debian_mirror(tmp_path) == "http://archive.example/debian"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main non-free\n"
    )
    assert debian_mirror(tmp_path) == "http://one.example/debian"


def test_no_mirror_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildFailed) as err:
        debian_mirror(tmp_path)
    assert "--mirror" in err.value.hint


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap"), reason="needs root")
def test_debootstrap_failure_reports_its_last_lines(tmp_path: Path) -> None:
    tarball = tmp_path / "cache" / "rootfs.tar"
    with pytest.raises(ImageBuildFailed) as err:
        make_rootfs(Profile("t", ("python3",), ()), tarball, mirror="http://127.0.0.1:9/debian")
    assert "debootstrap failed" in err.value.message
    assert "127.0.0.1:9" in err.value.message + err.value.hint
    assert not tarball.exists()
    assert list(tarball.parent.iterdir()) == []  # the work directory is gone


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
def test_debootstrap_without_root_says_what_to_do(tmp_path: Path) -> None:
    os.seteuid(65534)  # effective uid only: root gets it back below
    try:
        with pytest.raises(ImageBuildFailed) as err:
            make_rootfs(load_profile("minimal"), tmp_path / "rootfs.tar")
    finally:
        os.seteuid(0)
    assert "needs root" in err.value.message
    assert "sudo" in err.value.hint
    assert "image build --profile minimal" in err.value.hint


# --- the minimal image --------------------------------------------------------------------------


@pytest.mark.docker
def test_minimal_build_gives_a_labelled_image(
    docker_client: docker.DockerClient, minimal_image: str
) -> None:
    tag = minimal_image
    assert tag == image_tag("minimal")
    labels = docker_client.images.get(tag).labels
    assert labels[LABEL_PROFILE] == "minimal"
    assert labels[LABEL_KIND] == "sandbox"
    assert tag.endswith(labels[LABEL_INPUTS])


@pytest.mark.docker
def test_second_ensure_is_a_no_op(docker_client: docker.DockerClient, minimal_image: str) -> None:
    tag = minimal_image
    before = docker_client.images.get(tag).id
    events: list[ProgressEvent] = []
    assert ensure_image(docker_client, "minimal", events.append) == tag
    assert [e.step for e in events] == ["cached"]
    assert docker_client.images.get(tag).id == before


@pytest.mark.docker
def test_runs_as_uid_1000_with_python3(
    docker_client: docker.DockerClient, minimal_image: str
) -> None:
    script = "import os, sys; print(os.getuid(), os.getgid(), sys.version_info[:2], os.getcwd())"
    out = run(
        docker_client, minimal_image, ["sh", "-c", f'id -u; python3 -c "{script}"; echo "$HOME"']
    )
    assert out.split("\n")[:3] == ["1000", "1000 1000 (3, 11) /opt/agentcell", "/tmp"]


@pytest.mark.docker
def test_executor_is_installed(docker_client: docker.DockerClient, minimal_image: str) -> None:
    present = {n for n in EXECUTOR_FILES if (EXECUTOR_DIR / n).is_file()}
    out = run(
        docker_client,
        minimal_image,
        ["sh", "-c", "ls /opt/agentcell/executor; stat -c %U /workspace"],
    )
    assert present <= set(out.split())
    assert out.split()[-1] == "cell"
    run(docker_client, minimal_image, ["python3", "-c", "import executor.protocol"])


@pytest.mark.docker
@pytest.mark.usefixtures("minimal_image")
def test_cli_build_and_ls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "build", "--profile", "minimal"]) == 0
    tag = capsys.readouterr().out.strip()
    assert tag == image_tag("minimal")  # = minimal_image, unless someone edits the executor
    assert main(["image", "ls"]) == 0
    assert tag in capsys.readouterr().out


# docker-py's unix transport does not close a socket whose connect() failed; collect it here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_cli_error_has_hint_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTCELL_DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["image", "ls"]) == 1
    gc.collect()
    err = capsys.readouterr().err
    assert "error:" in err
    assert "hint:" in err
    assert "Traceback" not in err


# --- the full image -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(3600)
def test_full_image_has_data_science_and_a_browser(docker_client: docker.DockerClient) -> None:
    tag = ensure_image(docker_client, "full")
    out = run(docker_client, tag, ["python3", "-c", BROWSER_CHECK], shm_size="256m")
    assert out.strip().splitlines()[-1] == "cell | hello from chromium"
