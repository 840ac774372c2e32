"""A host uid per cell, from a range no host account uses, kept on disk across restarts.

Why not Docker's userns-remap: it is a daemon-wide setting (``/etc/docker/daemon.json``) that
we must not change on a shared engine, it moves every image and container of that engine into
a remapped storage tree, and it maps all containers to the same subordinate range, so two
users' files would still have one owner. A numeric uid per cell needs nothing from the engine:
the container runs as ``uid:uid`` (no passwd entry needed), its workspace file system is
created owned by it, and on the host those files belong to no account.
"""

from __future__ import annotations

import contextlib
import grp
import json
import pwd
from pathlib import Path

from agentcell.errors import AgentcellError
from agentcell.sandbox.base import CELL_UID

LEGACY_UID = CELL_UID  # cells made before per-cell uids ran as the image's user; they keep it
FIRST_UID = 1_900_000_000  # above systemd's container ranges (<= 1879048191), below 2**31
LAST_UID = 2_099_999_999


def host_account_uses(uid: int) -> bool:
    """Whether a host user or group has this id (we never hand such an id to a cell)."""
    with contextlib.suppress(KeyError):
        pwd.getpwuid(uid)
        return True
    with contextlib.suppress(KeyError):
        grp.getgrgid(uid)
        return True
    return False


class CellUids:
    """cell id -> uid, in one small JSON file replaced atomically on every change.

    Ids are never reused: a removed cell's uid may still own files somewhere (a backup)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._uids: dict[str, int] = {}
        self._next = FIRST_UID
        if path.exists():
            saved = json.loads(path.read_text())
            self._uids = {k: int(v) for k, v in saved["cells"].items()}
            self._next = int(saved["next"])

    def get(self, cell_id: str) -> int | None:
        return self._uids.get(cell_id)

    def uid_for(self, cell_id: str, *, legacy: bool = False) -> int:
        """The cell's uid; a new cell gets the next free one, a ``legacy`` one keeps 1000."""
        uid = self._uids.get(cell_id)
        if uid is None:
            uid = LEGACY_UID if legacy else self._allocate()
            self.record(cell_id, uid)
        return uid

    def record(self, cell_id: str, uid: int) -> None:
        if self._uids.get(cell_id) != uid:
            self._uids[cell_id] = uid
            self._save()

    def forget(self, cell_id: str) -> None:
        if self._uids.pop(cell_id, None) is not None:
            self._save()

    def _allocate(self) -> int:
        uid = self._next
        while host_account_uses(uid):
            uid += 1
        if uid > LAST_UID:
            raise AgentcellError(
                "no cell uid is left in the range", hint="delete cells that are no longer needed"
            )
        self._next = uid + 1
        return uid

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next": self._next, "cells": self._uids}, sort_keys=True))
        tmp.replace(self.path)
