"""Docs that tests keep honest: every setting is documented in the README, and the README's
commands exist."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentcell.cli import build_parser
from agentcell.config import CellLimits, Settings
from tests.conftest import RUN_ID, TEST_LABEL

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


def _commands() -> list[str]:
    """Every command of the CLI, with its aliases: ``serve``, ``users list/ls``, ..."""
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                names: dict[int, list[str]] = {}
                for name, sub in action.choices.items():
                    names.setdefault(id(sub), []).append(name)
                for aliases in names.values():
                    sub = action.choices[aliases[0]]
                    if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                        walk(sub, f"{prefix}{aliases[0]} ")
                    else:
                        found.append(prefix + "/".join(aliases))

    walk(build_parser(), "")
    return found


@pytest.mark.parametrize("command", _commands())
def test_every_cli_command_is_in_the_readme(command: str) -> None:
    group, _, subs = command.rpartition(" ")
    readme = README.replace("\\|", "|")
    for sub in subs.split("/"):
        full = f"{group} {sub}".strip()
        spelled = [f"agentcell {full}`", f"agentcell {full} ", f"agentcell {full}|"]
        if group:
            spelled += [f"agentcell {group} {x}|{sub}" for x in ("ls", "status", "build")]
            spelled += [f"|{sub}|", f"|{sub}`"]
        if any(s in readme for s in spelled):
            return
    pytest.fail(f"document agentcell {command} in the README")


@pytest.mark.docker
def test_the_readme_python_example_runs(tmp_path: Path, minimal_image: str) -> None:
    """The README's "Cells from Python" block, run as a user would, on its own data dir."""
    block = README.split("## Cells from Python, without the server", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    env = {
        **os.environ,
        "AGENTCELL_DATA_DIR": str(tmp_path / "data"),
        "AGENTCELL_INSTANCE_ID": f"test-{RUN_ID}-readme",
        "AGENTCELL_LABELS": json.dumps({TEST_LABEL: RUN_ID}),
        "AGENTCELL_IMAGE": minimal_image,
        "AGENTCELL_POOL_SIZE": "0",
        "AGENTCELL_LIMITS__WORKSPACE_MB": "64",
    }
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("42\n"), ran.stdout
    assert "hello.txt" in ran.stdout
