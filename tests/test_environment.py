"""The suite's own guard: a developer's AGENTCELL_* variables never reach the Settings that
tests build (tests/conftest.py clears them for every test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agentcell.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_settings_built_in_a_test_see_only_defaults() -> None:
    assert not [name for name in os.environ if name.startswith("AGENTCELL_")]
    settings = Settings()
    assert settings.network_default.mode == "none"
    assert settings.model == ""


def test_a_developers_environment_does_not_leak_into_tests() -> None:
    env = os.environ | {
        "AGENTCELL_NETWORK_DEFAULT": '{"mode": "public"}',
        "AGENTCELL_MODEL": "openai:gpt-4.1",
    }
    inner = f"{Path(__file__).relative_to(ROOT)}::test_settings_built_in_a_test_see_only_defaults"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", inner],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:]
