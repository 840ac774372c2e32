"""What every table's part of the store shares: the session factory, text clean-up, ids and
how a database failure is reported."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentcell.errors import StoreUnavailable


def new_id(prefix: str) -> str:
    """An opaque id: ``prefix`` and 16 hex digits (``u_``, ``s_``, ``x_``...)."""
    return prefix + secrets.token_hex(8)


def no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; output of a user's program can.
    return text.replace("\x00", "\ufffd")


def clip(text: str, limit: int) -> str:
    text = no_nul(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def unavailable(exc: Exception) -> StoreUnavailable:
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).strip().splitlines() or [""])[0]
    return StoreUnavailable(f"database error: {type(orig).__name__}: {first_line}")


class Tables:
    """The base of each table's part of ``Store``: one engine, sessions that hand back
    detached rows (``expire_on_commit=False``), database failures as StoreUnavailable."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise unavailable(exc) from exc
