"""The seccomp profile of our cells: Docker's default profile, minus io_uring.

``image/seccomp/default.json`` is moby's ``profiles/seccomp/default.json`` (Apache-2.0),
vendored unchanged. Engines before 25.0 allow ``io_uring_*`` in their built-in default; io_uring
has been a steady source of kernel escalation bugs and nothing a cell runs needs it, so we drop
those names from every allow rule. The profile's default action (errno 1, EPERM) then denies
them. Pass the result as ``security_opt=[f"seccomp={seccomp_profile()}", "no-new-privileges"]``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = Path(__file__).parent / "image" / "seccomp" / "default.json"
DENIED = frozenset({"io_uring_setup", "io_uring_enter", "io_uring_register"})


def _without(rules: list[dict[str, Any]], denied: frozenset[str]) -> list[dict[str, Any]]:
    """Drop ``denied`` names from allow rules; drop allow rules that end up empty."""
    kept: list[dict[str, Any]] = []
    for rule in rules:
        if rule.get("action") == "SCMP_ACT_ALLOW":
            names = [n for n in rule.get("names", []) if n not in denied]
            if not names:
                continue
            rule = {**rule, "names": names}
        kept.append(rule)
    return kept


def build_profile(base: dict[str, Any], denied: frozenset[str] = DENIED) -> dict[str, Any]:
    """``base`` with ``denied`` syscalls left to the default action (which must deny)."""
    if base.get("defaultAction") == "SCMP_ACT_ALLOW":
        raise ValueError("a profile whose default action allows cannot deny by omission")
    return {**base, "syscalls": _without(base["syscalls"], denied)}


@functools.cache
def seccomp_profile() -> str:
    """The profile as compact JSON text, ready for ``security_opt``."""
    base = json.loads(DEFAULT_PROFILE.read_text(encoding="utf-8"))
    return json.dumps(build_profile(base), separators=(",", ":"))
