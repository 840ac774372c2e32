"""Browsers' sign-ins (DESIGN §12): an API key or the admin token is traded once for a session
(a cookie and a CSRF token), which is then looked up on each request, briefly cached."""

from __future__ import annotations

import time
from dataclasses import dataclass

from agentcell.store import Store, User
from agentcell.store.models import WebSession
from agentcell.store.users import hash_key

CACHE_S = 5.0  # how long a looked-up session is trusted without the store (this process ends
# its own sessions at once; another process sharing the store within this time)


@dataclass(frozen=True)
class SignedIn:
    """Who a session is: ``user`` None is the admin."""

    user: User | None
    csrf_token: str
    expires_at: float  # epoch seconds


class WebSessions:
    def __init__(self, store: Store, ttl_s: float) -> None:
        self._store, self.ttl_s = store, ttl_s
        self._cache: dict[str, tuple[SignedIn, float]] = {}

    async def sign_in(self, user: User | None) -> tuple[str, SignedIn]:
        """A new session and its token (the cookie's value, shown this once)."""
        token, row = await self._store.create_web_session(
            None if user is None else user.id, self.ttl_s
        )
        return token, SignedIn(user, row.csrf_token, row.expires_at.timestamp())

    async def resolve(self, token: str) -> SignedIn | None:
        """Who holds the session token, unless it ended or expired."""
        digest, now = hash_key(token), time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now and hit[0].expires_at > time.time():
            return hit[0]
        row = await self._store.web_session(token)
        signed = None if row is None else await self._signed_in(row)
        if signed is None:
            self._cache.pop(digest, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (signed, now + CACHE_S)
        return signed

    async def _signed_in(self, row: WebSession) -> SignedIn | None:
        user = None if row.user_id is None else await self._store.get_user(row.user_id)
        if row.user_id is not None and user is None:
            return None
        return SignedIn(user, row.csrf_token, row.expires_at.timestamp())

    async def sign_out(self, token: str) -> None:
        self._cache.pop(hash_key(token), None)
        await self._store.delete_web_session(token)

    async def end_all(self, user_id: str | None, *, keep: str = "") -> None:
        """End every session of the user (None: the admin) but the one of token ``keep``."""
        kept = hash_key(keep) if keep else ""
        self._cache = {
            k: v
            for k, v in self._cache.items()
            if k == kept or (v[0].user.id if v[0].user else None) != user_id
        }
        await self._store.delete_web_sessions(user_id, keep=keep)
