"""At start, what the backend runs is made to agree with the placements: our containers are
adopted (by their owner's placement, or into the pool), orphans removed, storage that nothing
places deleted. Nothing depends on memory surviving a restart."""

from __future__ import annotations

import asyncio
import logging

from agentcell.sandbox.base import CellState, ContainerInfo
from agentcell.sandbox.cell import Cell
from agentcell.sandbox.lifecycle import Lifecycle
from agentcell.sandbox.placements import Placements
from agentcell.sandbox.pool import WarmPool
from agentcell.sandbox.uids import LEGACY_UID

log = logging.getLogger(__name__)


async def reconcile(lifecycle: Lifecycle, pool: WarmPool, placements: Placements) -> None:
    """Adopt our containers, remove orphans. Safe to run again."""
    roster, backend = lifecycle.roster, lifecycle.backend
    containers = await asyncio.to_thread(backend.list)
    placed = await placements.owners()
    owner_of = {cell_id: owner for owner, cell_id in placed.items()}
    known = {c.container_id for c in roster.all()}
    for info in containers:
        if info.container_id in known:
            continue
        lifecycle.uids.record(info.cell_id, LEGACY_UID if info.uid is None else info.uid)
        owner = owner_of.get(info.cell_id)
        if owner is not None and owner not in roster.owned:
            roster.owned[owner] = _adopt(lifecycle, info, owner)
        elif owner is None and pool.adoptable(info):
            pool.cells.append(_adopt(lifecycle, info, ""))
        else:
            log.info("removing orphan container %s", info.container_id[:12])
            await asyncio.to_thread(backend.remove, info.container_id)
    for owner, cell_id in placed.items():
        if owner not in roster.owned:  # placed, with no container: made again on first use
            roster.owned[owner] = lifecycle.cell(cell_id, owner)
    live = {c.cell_id for c in roster.all()} | set(owner_of)
    for cell_id in backend.storage_ids() - live:
        await asyncio.to_thread(lifecycle.delete_storage, cell_id)
    await lifecycle.detach_unused()


def _adopt(lifecycle: Lifecycle, info: ContainerInfo, owner: str) -> Cell:
    state = CellState.STOPPED if info.state is CellState.DEAD else info.state
    if info.image != lifecycle.image and state is not CellState.RUNNING:
        state = CellState.REMOVED  # recreated from the current image when next used
    return lifecycle.cell(info.cell_id, owner, info.container_id, state, info.created_at)
