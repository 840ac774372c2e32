"""Alembic environment for agentcell's packaged migrations (run through ``store.db``).

The URL comes in ``config.attributes["url"]`` (set by ``db.alembic_config``), or as the
``sqlalchemy.url`` option for a hand-made Alembic config.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from agentcell.store.db import sync_engine, sync_url
from agentcell.store.models import Base

# Two servers starting at once on one PostgreSQL database take turns on this lock, so only
# one of them migrates and the other then finds the schema at head.
_PG_LOCK_ID = 0x6167_6365  # "agce"

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use agentcell.store.db.alembic_config(url)")
    return str(url)


def run_offline() -> None:
    """Print SQL instead of running it (``alembic upgrade --sql``), for a DBA to apply."""
    context.configure(
        url=sync_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = sync_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER most things: batch mode copies the table instead.
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
