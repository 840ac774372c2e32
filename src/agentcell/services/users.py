"""Users and their API keys: made, listed and removed by the admin; a key told to its user."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from agentcell.errors import NotFound
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit
from agentcell.services.websessions import WebSessions
from agentcell.store import Store, User, hash_key


class KeyCache:
    """Recently seen API keys, so the exec hot path skips a database read. Entries live
    ``ttl_s``; deleting a user forgets theirs at once in this process (another API process
    sharing the database may accept a deleted user's key until its entry's ``ttl_s`` ends)."""

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


class Users:
    def __init__(self, store: Store, cells: CellService, audit: Audit, web: WebSessions) -> None:
        self._store, self._cells, self._audit, self._web = store, cells, audit, web
        self._keys = KeyCache()
        # Told before a user is deleted (the job dispatcher lets go of their jobs).
        self.before_delete: Callable[[str], Awaitable[None]] | None = None

    async def authenticate(self, api_key: str) -> User | None:
        """The key's user, or None when no user has that key."""
        return await self._keys.user(self._store, api_key)

    def known(self, api_key: str) -> User | None:
        """The user of a key this process saw recently (no database read), else None."""
        return self._keys.peek(api_key)

    async def create(self, name: str) -> tuple[User, str]:
        """A new user and their API key (shown this once: only its hash is kept)."""
        user, key = await self._store.create_user(name)
        await self._audit.record(user.id, "user.create", target=user.name)
        return user, key

    async def list_users(self) -> list[User]:
        return await self._store.list_users()

    async def rotate_key(self, user_id: str, *, keep_session: str = "") -> str:
        """A new API key for the user: the old one stops working, and so does every web
        sign-in of theirs but the one of ``keep_session`` (the caller's own, if it is)."""
        api_key = await self._store.rotate_key(user_id)
        if api_key is None:
            raise NotFound(f"no user {user_id!r}")
        self._keys.forget(user_id)
        await self._web.end_all(user_id, keep=keep_session)
        await self._audit.record(user_id, "user.key")
        return api_key

    async def delete(self, user_id: str, *, delete_workspace: bool = False) -> None:
        """Remove a user and their cell; their workspace only with ``delete_workspace``. Their
        audit trail stays."""
        if await self._store.get_user(user_id) is None:
            raise NotFound(f"no user {user_id!r}")
        self._keys.forget(user_id)
        await self._web.end_all(user_id)
        if self.before_delete is not None:
            await self.before_delete(user_id)
        await self._cells.remove(user_id, delete_workspace=delete_workspace)
        await self._store.delete_user(user_id)
        await self._audit.record(
            user_id, "user.delete", detail=f"delete_workspace={delete_workspace}"
        )
