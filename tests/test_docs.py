"""Docs that tests keep honest: every setting is documented in the README, and the README's
commands exist."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from agentcell.cli import build_parser
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
