"""Placements: which cell is an owner's, kept in the database so that every API process sees
them (DESIGN §13). A cell manager (a node) reads and writes its own: ``Placements(engine,
node=settings.instance)``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcell.errors import Conflict
from agentcell.store.common import Tables
from agentcell.store.models import Placement

log = logging.getLogger(__name__)


class Placements(Tables):
    """One node's owner -> cell id map."""

    def __init__(self, engine: AsyncEngine, node: str) -> None:
        super().__init__(engine)
        self.node = node

    async def cell_of(self, owner: str) -> str | None:
        """The owner's cell id on this node, or None."""
        query = select(Placement.cell_id).where(
            Placement.node == self.node, Placement.owner == owner
        )
        async with self._session() as session:
            return await session.scalar(query)

    async def owners(self) -> dict[str, str]:
        """Every owner placed on this node, and their cell id."""
        query = select(Placement.owner, Placement.cell_id).where(Placement.node == self.node)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return dict(rows)

    async def assign(self, owner: str, cell_id: str) -> None:
        """Make ``cell_id`` the owner's (replacing the one they had). Conflict when the cell is
        another owner's."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(Placement).values(node=self.node, owner=owner, cell_id=cell_id)
        upsert = statement.on_conflict_do_update(
            index_elements=[Placement.node, Placement.owner],
            set_={"cell_id": statement.excluded.cell_id},
        )
        async with self._session() as session:
            try:
                await session.execute(upsert)
                await session.commit()
            except IntegrityError:
                raise Conflict(f"cell {cell_id!r} is another owner's") from None

    async def remove(self, owner: str) -> None:
        """Forget the owner's cell (no-op when they have none)."""
        query = delete(Placement).where(Placement.node == self.node, Placement.owner == owner)
        async with self._session() as session:
            await session.execute(query)
            await session.commit()

    async def import_file(self, path: Path) -> int:
        """Take over the map a node kept in a JSON file before placements were in the database
        (``{owner: cell id}``); the file is renamed ``*.imported``. Returns how many it held."""
        if not path.exists():
            return 0
        owners: dict[str, str] = json.loads(path.read_text())
        for owner, cell_id in owners.items():
            await self.assign(owner, cell_id)
        path.replace(path.with_name(path.name + ".imported"))
        log.info("placements: took over %d owners from %s", len(owners), path)
        return len(owners)
