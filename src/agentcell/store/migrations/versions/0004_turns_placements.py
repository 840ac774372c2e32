"""turn locks (one running turn per session, across servers) and owner -> cell placements

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-15 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "turns",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_turns_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_turns")),
    )
    op.create_table(
        "placements",
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("cell_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("node", "owner", name=op.f("pk_placements")),
        sa.UniqueConstraint("node", "cell_id", name="uq_placements_node_cell_id"),
    )


def downgrade() -> None:
    op.drop_table("placements")
    op.drop_table("turns")
