"""audit: execs recorded when they start, completed when they end

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("ref", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default=sa.text("''"))
        )
        batch.add_column(
            sa.Column(
                "started_by", sa.String(length=64), nullable=False, server_default=sa.text("''")
            )
        )
        batch.create_index(batch.f("ix_audit_ref"), ["ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.drop_index(batch.f("ix_audit_ref"))
        batch.drop_column("started_by")
        batch.drop_column("status")
        batch.drop_column("ref")
