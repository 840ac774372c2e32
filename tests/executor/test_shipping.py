"""What of the executor goes into the sandbox image: every module but the host's client, and the
image tag changes with any of them (no Docker needed: the tag is a hash of the recipe)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentcell.sandbox.docker import images


def test_every_executor_module_but_the_client_is_shipped() -> None:
    modules = sorted(p.name for p in images.EXECUTOR_DIR.glob("*.py"))
    assert images.executor_files() == tuple(m for m in modules if m != "client.py")
    assert {"server.py", "kernel.py", "zygote.py", "protocol.py"} <= set(images.executor_files())


def test_the_image_tag_covers_every_shipped_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "executor"
    shutil.copytree(images.EXECUTOR_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(images, "EXECUTOR_DIR", copy)
    before = images.image_tag("minimal")
    (copy / "client.py").write_text("# host only\n")
    assert images.image_tag("minimal") == before
    (copy / "extra.py").write_text("X = 1\n")
    added = images.image_tag("minimal")
    assert added != before
    (copy / "pipes.py").write_text((copy / "pipes.py").read_text() + "\n# changed\n")
    assert images.image_tag("minimal") not in (before, added)
