"""Workspace directories on the host, one per cell, with an enforced size quota.

A plain bind-mounted directory has no size limit: one user could fill the host's disk. So,
when we run as root, each workspace is an ext4 file system in a sparse image file, loop-mounted
(nosuid, nodev): a full workspace means ENOSPC inside the cell and nothing else. Without root we
fall back to plain directories and say so in the log.

The host never reads or writes files inside a workspace (the cell's executor does that, as the
cell's user), so links a cell plants there are never followed by us.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from agentcell.errors import AgentcellError

log = logging.getLogger(__name__)


class WorkspaceError(AgentcellError):
    code = "workspace_error"


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise WorkspaceError(
            f"{cmd[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}",
            hint="check that the data dir's file system allows loop devices, "
            "or set AGENTCELL_LIMITS__WORKSPACE_MB=0 to run without workspace quotas",
        )


def _mounted_points() -> set[str]:
    with Path("/proc/self/mountinfo").open() as f:
        return {line.split()[4] for line in f}


class Workspaces:
    def __init__(self, root: Path, quota_mb: int) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.quota_mb = quota_mb
        self.enforced = quota_mb > 0 and os.geteuid() == 0 and shutil.which("mkfs.ext4") is not None
        if quota_mb > 0 and not self.enforced:
            log.warning("workspace quota not enforced: needs root and mkfs.ext4 (e2fsprogs)")

    def path(self, ws_id: str) -> Path:
        return self.root / ws_id

    def _image(self, ws_id: str) -> Path:
        return self.root / f"{ws_id}.img"

    def exists(self, ws_id: str) -> bool:
        return self.path(ws_id).is_dir()

    def mounted(self, ws_id: str) -> bool:
        return str(self.path(ws_id)) in _mounted_points()

    def ensure(self, ws_id: str, uid: int) -> Path:
        """Create the workspace if needed (owned by ``uid``) and make sure it is mounted.

        Idempotent, and every path that starts a container calls it: after a reboot the image
        is not mounted, and a container started then would see the empty directory below the
        mount point and write the user's files onto the host's disk."""
        path = self.path(ws_id)
        image = self._image(ws_id)
        if not self.enforced:
            path.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                os.chown(path, uid, uid)
            else:
                path.chmod(0o777)  # the cell's uid may not be ours
            return path
        path.mkdir(exist_ok=True, mode=0o755)
        if self.mounted(ws_id):
            return path
        fresh = not image.exists()
        if fresh:
            with image.open("wb") as f:
                f.truncate(self.quota_mb * 1024 * 1024)
            _run(
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                f"lazy_itable_init=1,lazy_journal_init=1,root_owner={uid}:{uid}",
                str(image),
            )
        _run("mount", "-o", "loop,nosuid,nodev", str(image), str(path))
        if fresh:
            (path / "lost+found").rmdir()
        return path

    def used_bytes(self, ws_id: str) -> int | None:
        """What the workspace's own file system holds (None: not a quota'd volume, or not
        mounted)."""
        if not self.enforced or not self.mounted(ws_id):
            return None
        try:
            fs = os.statvfs(self.path(ws_id))
        except OSError:
            return None
        return (fs.f_blocks - fs.f_bfree) * fs.f_frsize

    def unmount(self, ws_id: str) -> None:
        """Only for a workspace no running container uses: a running one keeps its bind mount
        of the old mount, and mounting the image again under it would mount one ext4 twice."""
        path = self.path(ws_id)
        if self.enforced and self.mounted(ws_id):
            _run("umount", "--lazy", str(path))

    def delete(self, ws_id: str) -> None:
        """Remove a workspace and everything in it."""
        self.unmount(ws_id)
        path = self.path(ws_id)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        self._image(ws_id).unlink(missing_ok=True)

    def ids(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()}
