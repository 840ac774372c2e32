"""Which cell belongs to which owner, kept on disk so a restart of our process loses nothing.

Container labels cannot change after creation, and a pooled cell gets its owner later, so
the owner -> cell id map lives in one small JSON file, replaced atomically on every change.
"""

from __future__ import annotations

import json
from pathlib import Path


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._owners: dict[str, str] = {}
        if path.exists():
            self._owners = dict(json.loads(path.read_text()))

    def cell_of(self, owner: str) -> str | None:
        return self._owners.get(owner)

    def owners(self) -> dict[str, str]:
        return dict(self._owners)

    def assign(self, owner: str, cell_id: str) -> None:
        self._owners[owner] = cell_id
        self._save()

    def forget(self, owner: str) -> None:
        if self._owners.pop(owner, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._owners, indent=0, sort_keys=True))
        tmp.replace(self.path)
