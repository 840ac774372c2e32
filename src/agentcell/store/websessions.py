"""Browsers' sign-ins (DESIGN §12): a session token is handed out once, in a cookie; only its
hash is kept, as with API keys (see ``users.hash_key``)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete

from agentcell.store.common import Tables
from agentcell.store.models import WebSession, utcnow
from agentcell.store.users import hash_key

SESSION_PREFIX = "acs_"


class WebSessionTable(Tables):
    async def create_web_session(self, user_id: str | None, ttl_s: float) -> tuple[str, WebSession]:
        """A new session of the user (None: the admin) and its token, shown this once."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        row = WebSession(
            token_hash=hash_key(token),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
        async with self._session() as session:
            session.add(row)
            await session.execute(delete(WebSession).where(WebSession.expires_at <= now))
            await session.commit()
        return token, row

    async def web_session(self, token: str) -> WebSession | None:
        """The session of a token, unless it ended or expired."""
        async with self._session() as session:
            row = await session.get(WebSession, hash_key(token))
        return row if row is not None and row.expires_at > utcnow() else None

    async def delete_web_session(self, token: str) -> None:
        async with self._session() as session:
            await session.execute(
                delete(WebSession).where(WebSession.token_hash == hash_key(token))
            )
            await session.commit()

    async def delete_web_sessions(self, user_id: str | None, *, keep: str = "") -> None:
        """End every session of the user (None: the admin) but the one of token ``keep``."""
        owner = WebSession.user_id.is_(None) if user_id is None else WebSession.user_id == user_id
        query = delete(WebSession).where(owner)
        if keep:
            query = query.where(WebSession.token_hash != hash_key(keep))
        async with self._session() as session:
            await session.execute(query)
            await session.commit()
