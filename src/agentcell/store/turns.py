"""Turn locks: at most one turn runs in a session, whichever server runs it.

A lock is a lease: claimed by inserting the session's row in ``turns`` (or by taking over a
row whose lease has expired), renewed by its holder while the turn runs, deleted at the end.
Leases are timed by each server's clock, so servers sharing a database keep their clocks in
step (NTP); a lease is long next to any skew between them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from agentcell.store.common import Tables
from agentcell.store.models import ChatSession, TurnLock, utcnow
from agentcell.store.sessions import session_not_found


def _claim(dialect: str, session_id: str, holder: str, now: datetime, lease_s: float) -> Any:
    """INSERT the lock, or take over the session's row if its lease has expired: one statement,
    so of two servers racing for one session exactly one wins. Returns the holder if claimed."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(TurnLock).values(
        session_id=session_id, holder=holder, expires_at=now + timedelta(seconds=lease_s)
    )
    return statement.on_conflict_do_update(
        index_elements=[TurnLock.session_id],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=TurnLock.expires_at < now,
    ).returning(TurnLock.holder)


class TurnLocks(Tables):
    async def claim_turn(self, user_id: str, session_id: str, holder: str, lease_s: float) -> bool:
        """Take the session's turn lock for ``holder`` (a token new for each turn), leased for
        ``lease_s``. False while another holder's lease runs; NotFound when the user has no such
        session."""
        owned = select(ChatSession.id).where(
            ChatSession.id == session_id, ChatSession.user_id == user_id
        )
        claim = _claim(self.engine.dialect.name, session_id, holder, utcnow(), lease_s)
        async with self._session() as session:
            if await session.scalar(owned) is None:
                raise session_not_found(session_id)
            try:
                won = await session.scalar(claim)
                await session.commit()
            except IntegrityError:  # the session was deleted meanwhile
                raise session_not_found(session_id) from None
        return won is not None

    async def renew_turns(self, holders: Collection[str], lease_s: float) -> set[str]:
        """Extend these holders' leases by ``lease_s`` from now. Returns the holders that still
        hold their lock: one missing lost it (its session was deleted, or its lease ran out and
        another server took the session over)."""
        if not holders:
            return set()
        query = (
            update(TurnLock)
            .where(TurnLock.holder.in_(list(holders)))
            .values(expires_at=utcnow() + timedelta(seconds=lease_s))
            .returning(TurnLock.holder)
        )
        async with self._session() as session:
            held = set((await session.scalars(query)).all())
            await session.commit()
        return held

    async def release_turn(self, session_id: str, holder: str) -> None:
        """Let go of the session's lock, if ``holder`` still holds it."""
        query = delete(TurnLock).where(TurnLock.session_id == session_id, TurnLock.holder == holder)
        async with self._session() as session:
            await session.execute(query)
            await session.commit()
