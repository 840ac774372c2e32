"""Image profiles: ``image/profiles/<name>.toml``, the Debian packages and pip requirements of
an image (``extends`` another profile to add to it)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentcell.errors import InvalidRequest

PROFILES_DIR = Path(__file__).parent / "image" / "profiles"


@dataclass(frozen=True)
class Profile:
    name: str
    debian: tuple[str, ...]  # Debian 12 packages
    pip: tuple[str, ...]  # pip requirements, installed from wheels
    drop: tuple[str, ...] = ()  # Debian packages purged after install (unneeded hard deps)


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name: str) -> Profile:
    path = PROFILES_DIR / f"{name}.toml"
    if not path.is_file():
        raise InvalidRequest(
            f"unknown image profile {name!r}", hint=f"choose one of: {', '.join(profile_names())}"
        )
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    lists = {key: list(data.get(key, [])) for key in ("debian", "pip", "drop")}
    if parent := data.get("extends"):
        base = load_profile(parent)
        lists = {key: [*getattr(base, key), *lists[key]] for key in lists}
    unique = {key: tuple(dict.fromkeys(values)) for key, values in lists.items()}
    return Profile(name, unique["debian"], unique["pip"], unique["drop"])
