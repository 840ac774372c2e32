"""The store: users with hashed API keys, chat sessions and their messages, the audit trail,
turn locks, jobs and schedules, egress policies and secrets, one part per table (``users``,
``sessions``, ``audit``, ``turns``, ``jobs``, ``schedules``, ``network``, ``websessions``), and the
dispatcher's view of everyone's jobs (``queue``).

Every query about a user's things takes that user's id. Rows come back detached
(``expire_on_commit=False``): read their attributes freely after the call returns.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError

from agentcell.config import Settings
from agentcell.errors import StoreUnavailable
from agentcell.store import db
from agentcell.store.audit import AuditTrail
from agentcell.store.common import unavailable
from agentcell.store.jobs import JobTable
from agentcell.store.network import NetworkTable
from agentcell.store.queue import JobQueue
from agentcell.store.schedules import ScheduleTable
from agentcell.store.sessions import SessionTable
from agentcell.store.turns import TurnLocks
from agentcell.store.users import UserTable
from agentcell.store.websessions import WebSessionTable

log = logging.getLogger(__name__)


class Store(
    UserTable,
    SessionTable,
    AuditTrail,
    TurnLocks,
    JobTable,
    ScheduleTable,
    JobQueue,
    NetworkTable,
    WebSessionTable,
):
    """Open with ``await Store.open(url)`` (migrates first); ``close()`` or ``async with``."""

    @classmethod
    async def open(cls, url: str) -> Store:
        """Migrate the database to head (off the event loop), then connect."""
        try:
            await asyncio.to_thread(db.upgrade, url)
        except (OperationalError, InterfaceError) as exc:
            raise unavailable(exc) from exc
        except CommandError as exc:
            raise StoreUnavailable(
                f"cannot migrate the database: {exc}",
                hint="the database may have been migrated by a newer agentcell; "
                "upgrade agentcell, or point AGENTCELL_DATABASE_URL at another database",
            ) from exc
        store = cls(db.async_engine(url))
        log.info("store open: %s", db.async_url(url).render_as_string(hide_password=True))
        return store

    @classmethod
    async def from_settings(cls, settings: Settings) -> Store:
        return await cls.open(db.database_url(settings))

    async def close(self) -> None:
        await self.flush()
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (for health checks)."""
        async with self._session() as session:
            await session.execute(text("SELECT 1"))
