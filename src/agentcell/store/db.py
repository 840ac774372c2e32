"""Database URLs, engines and migrations.

One URL setting names the database; we choose the drivers. SQLite runs on ``aiosqlite`` and
migrates with the standard library's ``sqlite3``; PostgreSQL uses psycopg 3 for both, since it
does sync and async. Migrations are Alembic scripts shipped inside the package
(``store/migrations``), so an installed agentcell migrates its own database at start.

To write a new migration, change ``models.py``, then, on a database at head::

    from alembic import command
    from agentcell.store.db import alembic_config
    command.revision(alembic_config("sqlite:////tmp/ac.db"), "add sessions",
                     autogenerate=True, rev_id="0002")

and read what autogenerate wrote before keeping it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentcell.config import Settings
from agentcell.errors import InvalidSetting

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 10_000

# Alembic's ``context`` is process-global, so one migration runs at a time in a process.
_migrating = threading.Lock()

# backend name -> (sync driver, async driver)
_DRIVERS = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgresql": ("postgresql+psycopg", "postgresql+psycopg"),
}
_ALIASES = {"postgres": "postgresql"}
_URL_HINT = "use sqlite:///path/to/agentcell.db or postgresql://user:password@host:5432/dbname"


def database_url(settings: Settings) -> str:
    """The configured URL, or the default: a SQLite file in the data dir."""
    if settings.database_url:
        return settings.database_url
    return URL.create("sqlite", database=str(settings.data_dir / "agentcell.db")).render_as_string()


def _parse(url: str) -> tuple[URL, str]:
    """The URL and its backend (``sqlite`` or ``postgresql``), or InvalidSetting."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The text may hold a password: do not echo it.
        raise InvalidSetting(
            "AGENTCELL_DATABASE_URL is not a database URL", hint=_URL_HINT
        ) from None
    backend = parsed.get_backend_name()
    backend = _ALIASES.get(backend, backend)
    if backend not in _DRIVERS:
        raise InvalidSetting(f"unsupported database {backend!r}", hint=_URL_HINT)
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise InvalidSetting(
            "an in-memory SQLite database cannot be migrated and then shared",
            hint="give a file path: sqlite:///path/to/agentcell.db",
        )
    return parsed, backend


def sync_url(url: str) -> URL:
    """URL for migrations and tools: stdlib sqlite3, or psycopg."""
    parsed, backend = _parse(url)
    return parsed.set(drivername=_DRIVERS[backend][0])


def async_url(url: str) -> URL:
    """URL for the running server: aiosqlite, or psycopg's async side."""
    parsed, backend = _parse(url)
    return parsed.set(drivername=_DRIVERS[backend][1])


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases."""
    parsed, backend = _parse(url)
    return Path(parsed.database) if backend == "sqlite" and parsed.database else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes a writer wait for the
    # lock instead of failing at once; SQLite leaves foreign keys off unless asked, per connection.
    # synchronous=NORMAL is durable across crashes of our process in WAL mode (only a power loss
    # can drop the last commits) and saves an fsync per write on the exec path.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def sync_engine(url: str) -> Engine:
    target = sync_url(url)
    engine = create_engine(target, pool_pre_ping=target.get_backend_name() != "sqlite")
    if target.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def async_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    engine = create_async_engine(target, pool_pre_ping=target.get_backend_name() != "sqlite")
    if target.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(url: str) -> Config:
    """An Alembic config for our packaged migrations, without an ini file.

    The URL travels in ``attributes``, not in the ini options, where ``%`` in a password would
    be read as interpolation.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """One migration at a time: in this process, and across processes on one SQLite file.

    PostgreSQL servers take turns on an advisory lock instead (see ``migrations/env.py``). The
    SQLite lock is a separate file: closing any descriptor of the database file itself would
    drop the POSIX locks SQLite holds on it.
    """
    with _migrating:
        path = sqlite_path(url)
        if path is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_name(path.name + ".migrate-lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (blocking: run it off the event loop)."""
    with _migration_lock(url):
        log.info("migrating %s to %s", sync_url(url).render_as_string(hide_password=True), revision)
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every table we made)."""
    with _migration_lock(url):
        command.downgrade(alembic_config(url), revision)
