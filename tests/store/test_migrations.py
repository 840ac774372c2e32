"""Migrations, schema and restarts, on SQLite and PostgreSQL; URLs and errors."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from agentcell.config import Settings
from agentcell.errors import InvalidSetting, StoreUnavailable
from agentcell.store import Store, database_url
from agentcell.store.db import (
    async_engine,
    async_url,
    downgrade,
    sync_engine,
    sync_url,
    upgrade,
)
from agentcell.store.models import Base

TABLES = {
    "users",
    "audit",
    "sessions",
    "messages",
    "turns",
    "placements",
    "schedules",
    "jobs",
    "job_events",
    "network_policies",
    "deployment_settings",
    "secrets",
    "web_sessions",
}
HEAD = "0007"


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_downgrade_upgrade(db_url: str, raw: Engine) -> None:
    upgrade(db_url)
    assert tables(raw) >= TABLES
    assert revision(raw) == HEAD
    upgrade(db_url)  # at head already: nothing to do
    assert revision(raw) == HEAD

    downgrade(db_url, "0006")  # one step down: the web page's sign-ins
    assert revision(raw) == "0006"
    assert "web_sessions" not in tables(raw)
    upgrade(db_url)
    assert tables(raw) >= TABLES

    downgrade(db_url, "0005")  # network policies, deployment settings, secrets
    assert revision(raw) == "0005"
    assert not tables(raw) & {"network_policies", "deployment_settings", "secrets"}
    upgrade(db_url)
    assert tables(raw) >= TABLES

    downgrade(db_url, "0004")  # jobs, their events and schedules go
    assert revision(raw) == "0004"
    assert not tables(raw) & {"schedules", "jobs", "job_events"}
    upgrade(db_url)
    assert tables(raw) >= TABLES

    downgrade(db_url, "0003")  # turn locks and placements go
    assert revision(raw) == "0003"
    assert tables(raw) & TABLES == {"users", "audit", "sessions", "messages"}

    downgrade(db_url, "0001")  # the chat tables go, users and audit stay
    assert revision(raw) == "0001"
    assert tables(raw) & TABLES == {"users", "audit"}

    downgrade(db_url, "base")
    assert not tables(raw) & TABLES
    assert revision(raw) is None

    upgrade(db_url)
    assert tables(raw) >= TABLES
    assert revision(raw) == HEAD
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(raw).get_indexes("audit")}
    assert indexes["ix_audit_user_id_id"] == ["user_id", "id"]
    assert not inspect(raw).get_foreign_keys("audit")
    for table, column, parent in (
        ("sessions", "user_id", "users"),
        ("messages", "session_id", "sessions"),
    ):
        [fk] = inspect(raw).get_foreign_keys(table)
        assert (fk["constrained_columns"], fk["referred_table"]) == ([column], parent)
        assert fk["options"].get("ondelete", "").upper() == "CASCADE"
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(raw).get_indexes(table)}
        assert indexes[f"ix_{table}_{column}"] == [column]
    [fk] = inspect(raw).get_foreign_keys("turns")  # a session's lock goes with it
    assert (fk["constrained_columns"], fk["referred_table"]) == (["session_id"], "sessions")
    assert fk["options"].get("ondelete", "").upper() == "CASCADE"
    assert not inspect(raw).get_foreign_keys("placements")


def test_upgrade_keeps_users_made_before_sessions(db_url: str, raw: Engine) -> None:
    """A database at 0001 with users in it moves to head; the users can then have sessions."""
    upgrade(db_url, "0001")
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, name, key_hash, key_prefix, created_at) "
                "VALUES ('u_old', 'old', 'h', 'ac_x', '2025-01-01T00:00:00+00:00')"
            )
        )
    upgrade(db_url)
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sessions (id, user_id, title, created_at, updated_at) VALUES "
                "('s_1', 'u_old', 't', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')"
            )
        )
        assert conn.execute(text("SELECT count(*) FROM sessions")).scalar_one() == 1


def test_models_match_the_migrated_schema(db_url: str, raw: Engine) -> None:
    upgrade(db_url)
    with raw.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []


async def test_reopening_keeps_data(db_url: str) -> None:
    async with await Store.open(db_url) as store:
        alice, key = await store.create_user("alice")
        await store.record(alice.id, "exec", detail="hello")

    async with await Store.open(db_url) as store:
        found = await store.user_by_key(key)
        assert found is not None
        assert found.id == alice.id
        assert found.created_at == alice.created_at
        assert [e.detail for e in await store.audit(alice.id)] == ["hello"]
        bob, _ = await store.create_user("bob")
        assert [u.name for u in await store.list_users()] == ["alice", "bob"]
        assert (await store.audit(None))[0].id == 1


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'new' / 'dir' / 'a.db'}")
    async with store, store.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() >= 1000
    assert (tmp_path / "new" / "dir" / "a.db").is_file()


def test_default_url_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = database_url(Settings(data_dir=tmp_path))
    assert url == f"sqlite:///{tmp_path}/agentcell.db"
    assert database_url(Settings(data_dir=tmp_path, database_url="postgresql://h/db")) == (
        "postgresql://h/db"
    )


@pytest.mark.parametrize(
    ("url", "sync", "runtime"),
    [
        ("sqlite:////x/a.db", "sqlite:////x/a.db", "sqlite+aiosqlite:////x/a.db"),
        ("sqlite+aiosqlite:///a.db", "sqlite:///a.db", "sqlite+aiosqlite:///a.db"),
        (
            "postgresql://u:p@h:5/d",
            "postgresql+psycopg://u:p@h:5/d",
            "postgresql+psycopg://u:p@h:5/d",
        ),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_url_mapping(url: str, sync: str, runtime: str) -> None:
    assert sync_url(url).render_as_string(hide_password=False) == sync
    assert async_url(url).render_as_string(hide_password=False) == runtime


@pytest.mark.parametrize(
    "url", ["", "not a url", "mysql://u@h/d", "sqlite://", "sqlite:///:memory:"]
)
async def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        await Store.open(url)
    assert info.value.hint


async def test_bad_url_does_not_echo_the_password() -> None:
    with pytest.raises(InvalidSetting) as info:
        await Store.open("sekrit-password")
    assert "sekrit" not in str(info.value)


async def test_unreachable_database() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailable) as info:
        await Store.open(f"postgresql://postgres:pw@127.0.0.1:{port}/none")
    assert info.value.status_code == 503
    assert "pw" not in info.value.message


async def test_ping(store: Store, db_url: str) -> None:
    await store.ping()
    broken = Store(async_engine(db_url.replace("/agentcell", "/nowhere/agentcell")))
    try:
        with pytest.raises(StoreUnavailable):
            await broken.ping()
    finally:
        await broken.close()


async def test_concurrent_opens_migrate_once(db_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(db_url) for _ in range(4)))
    try:
        user, _ = await stores[0].create_user("alice")
        assert await stores[3].get_user(user.id) is not None
    finally:
        for s in stores:
            await s.close()


def test_concurrent_processes_migrate_once(db_url: str) -> None:
    """Servers starting together on one database: one migrates, the others wait and find head."""
    code = "import sys; from agentcell.store.db import upgrade; upgrade(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine = sync_engine(db_url)
    try:
        assert revision(engine) == HEAD
    finally:
        engine.dispose()


async def test_database_from_a_newer_agentcell(db_url: str, raw: Engine) -> None:
    upgrade(db_url)
    with raw.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreUnavailable) as info:
        await Store.open(db_url)
    assert "newer agentcell" in info.value.hint


def test_jobs_schema(db_url: str, raw: Engine) -> None:
    """0005: jobs go with their user and keep their events; a schedule's deletion leaves its
    jobs (SET NULL); the listing and queue indexes exist."""
    upgrade(db_url)
    fks = {
        (table, tuple(fk["constrained_columns"])): (fk["referred_table"], fk["options"])
        for table in ("jobs", "job_events", "schedules")
        for fk in inspect(raw).get_foreign_keys(table)
    }
    ondelete = {key: (ref, opts.get("ondelete", "").upper()) for key, (ref, opts) in fks.items()}
    assert ondelete == {
        ("jobs", ("user_id",)): ("users", "CASCADE"),
        ("jobs", ("schedule_id",)): ("schedules", "SET NULL"),
        ("job_events", ("job_id",)): ("jobs", "CASCADE"),
        ("schedules", ("user_id",)): ("users", "CASCADE"),
    }
    indexes = {
        ix["name"]: ix["column_names"]
        for table in ("jobs", "job_events", "schedules")
        for ix in inspect(raw).get_indexes(table)
    }
    assert indexes["ix_jobs_user_id_created_at"] == ["user_id", "created_at"]
    assert indexes["ix_jobs_state_created_at"] == ["state", "created_at"]
    assert indexes["ix_job_events_job_id"] == ["job_id"]
    assert indexes["ix_schedules_user_id"] == ["user_id"]


def test_upgrade_to_jobs_keeps_users(db_url: str, raw: Engine) -> None:
    """A database at 0004 with a user moves to 0005; the columns' server defaults fill a row
    inserted with only what has no default."""
    upgrade(db_url, "0004")
    now = "'2026-01-01T00:00:00+00:00'"
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, name, key_hash, key_prefix, created_at) "
                f"VALUES ('u_old', 'old', 'h', 'ac_x', {now})"
            )
        )
    upgrade(db_url)
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, user_id, name, kind, language, code, file, prompt, "
                "output_dir, timeout_s, state, reason, created_at) VALUES ('j_1', 'u_old', 'n', "
                f"'exec', 'python', 'print(1)', '', '', 'jobs/j_1', 60, 'queued', '', {now})"
            )
        )
        conn.execute(
            text(
                "INSERT INTO schedules (id, user_id, name, kind, job, created_at) "
                f"VALUES ('s_1', 'u_old', 'n', 'cron', '{{}}', {now})"
            )
        )
        job = conn.execute(text("SELECT attempt, node, log_bytes FROM jobs")).one()
        assert tuple(job) == (1, "", 0)
        schedule = conn.execute(
            text("SELECT cron, tz, paused, fires, skips, last_skip_reason FROM schedules")
        ).one()
        assert tuple(schedule) == ("", "UTC", False, 0, 0, "")
