"""The admin token: from settings, else generated once into the data dir (mode 0600)."""

from __future__ import annotations

import os
import secrets
import time

from agentcell.config import Settings
from agentcell.store import Store, User, hash_key


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


class KeyCache:
    """Recently seen API keys, so the exec hot path skips a database read. Entries live
    ``ttl_s``; deleting a user forgets theirs at once (one server process per data dir)."""

    def __init__(self, ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[User, float]] = {}

    async def user(self, store: Store, api_key: str) -> User | None:
        digest = hash_key(api_key)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        user = await store.user_by_key(api_key)
        if user is not None:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (user, now + self.ttl_s)
        return user

    def peek(self, api_key: str) -> User | None:
        """The user of a key seen recently, without reading the database."""
        hit = self._entries.get(hash_key(api_key)) if api_key else None
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def forget(self, user_id: str) -> None:
        self._entries = {k: v for k, v in self._entries.items() if v[0].id != user_id}
