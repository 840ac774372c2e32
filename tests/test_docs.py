"""Docs that tests keep honest: every setting is documented in the README, and the README's
commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentcell.config import CellLimits, Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
UNDOCUMENTED = {
    "instance_id",
    "labels",
    "docker_host",
    "start_timeout_s",
    "reap_interval_s",
    "exec_timeout_max_s",
    "debian_mirror",
    "limits",
}


def _documented(env: str) -> bool:
    """`AGENTCELL_X` written out, or as a `/ _SUFFIX` shorthand after a sibling in one row."""
    if env in README:
        return True
    suffix = env.rsplit("_", 2)
    return any(f"_{'_'.join(suffix[i:])}`" in README for i in (1, 2))


@pytest.mark.parametrize("field", sorted(set(Settings.model_fields) - UNDOCUMENTED))
def test_every_setting_is_in_the_readme(field: str) -> None:
    assert _documented(f"AGENTCELL_{field.upper()}"), f"document AGENTCELL_{field.upper()}"


@pytest.mark.parametrize("field", sorted(CellLimits.model_fields))
def test_every_limit_is_in_the_readme(field: str) -> None:
    name = field.upper()
    assert f"AGENTCELL_LIMITS__{name}" in README or f"__{name}`" in README, name


@pytest.mark.parametrize("script", re.findall(r"^(scripts/\w+)", README, re.MULTILINE))
def test_readme_scripts_exist(script: str) -> None:
    assert (ROOT / script).is_file(), script


def test_ci_runs_the_readme_test_command() -> None:
    assert "scripts/test" in README
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
