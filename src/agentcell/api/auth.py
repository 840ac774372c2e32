"""The admin token: from settings, else generated once into the data dir (mode 0600), and
rotated there."""

from __future__ import annotations

import os
import secrets

from agentcell.config import Settings
from agentcell.errors import Conflict


def ensure_admin_token(settings: Settings) -> tuple[str, bool]:
    """Return (token, created_now). A new token is written with O_EXCL so two starts agree."""
    if settings.admin_token:
        return settings.admin_token, False
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings.admin_token_path
    token = "adm_" + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def rotate_admin_token(settings: Settings) -> str:
    """A new generated admin token, written over the old file (atomically, mode 0600)."""
    if settings.admin_token:
        raise Conflict(
            "the admin token is set by the server's settings (AGENTCELL_ADMIN_TOKEN)",
            hint="change it there and restart the server",
        )
    token = "adm_" + secrets.token_urlsafe(32)
    path = settings.admin_token_path
    new = path.with_name(path.name + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    new.replace(path)
    return token
