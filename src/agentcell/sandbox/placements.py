"""Which cell belongs to which owner: a ``Placements`` the manager is given.

Container labels cannot change after creation, and a pooled cell gets its owner later, so the
owner -> cell id map is kept apart from the containers. ``JsonPlacements`` (the default) keeps
it in one small JSON file in the data dir; a store-backed one lets a second API process see the
same map (DESIGN §13).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol


class Placements(Protocol):
    """owner id -> cell id, durable: what a restarted manager reads back. Every method may
    raise ``AgentcellError`` (say ``StoreUnavailable``) when the map cannot be reached."""

    async def cell_of(self, owner: str) -> str | None:
        """The owner's cell id; ``None``: the owner has none (yet, or any more)."""
        ...

    async def owners(self) -> dict[str, str]:
        """Every owner with a cell, and its cell id (a copy)."""
        ...

    async def assign(self, owner: str, cell_id: str) -> None:
        """Place the owner's cell; replaces an earlier one. Durable when it returns."""
        ...

    async def remove(self, owner: str) -> None:
        """Forget the owner's cell. Idempotent."""
        ...


class JsonPlacements:
    """Placements in one JSON file, replaced atomically on every change (the file is small and
    changes only when a user gets or loses a cell, so it is written on the event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._owners: dict[str, str] = {}
        if path.exists():
            self._owners = dict(json.loads(path.read_text()))

    async def cell_of(self, owner: str) -> str | None:
        return self._owners.get(owner)

    async def owners(self) -> dict[str, str]:
        return dict(self._owners)

    async def assign(self, owner: str, cell_id: str) -> None:
        self._owners[owner] = cell_id
        self._save()

    async def remove(self, owner: str) -> None:
        if self._owners.pop(owner, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._owners, indent=0, sort_keys=True))
        tmp.replace(self.path)
