"""Idle cells go down the tiers (paused, stopped, removed; the workspace always kept), and cells
that died on their own are noticed. Never work in flight: a cell with a running call or an open
stream is skipped, and that is checked again under the owner's lock."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from agentcell.errors import AgentcellError, Conflict, NotFound
from agentcell.sandbox.base import CellState
from agentcell.sandbox.cell import Cell, death_error
from agentcell.sandbox.lifecycle import Lifecycle
from agentcell.sandbox.pool import WarmPool
from agentcell.sandbox.service import ReapReport

log = logging.getLogger(__name__)

GONE = (CellState.REMOVED, CellState.DEAD)
Tier = Literal["pause", "stop", "remove"]


class Reaper:
    def __init__(self, lifecycle: Lifecycle, pool: WarmPool) -> None:
        self.lifecycle = lifecycle
        self.pool = pool
        self.errors = 0  # rounds that failed; the loop goes on (reaper_errors_total)

    async def reap(self, now: float | None = None) -> ReapReport:
        """One round: notice deaths, then move each idle owned cell down the tiers."""
        now = time.time() if now is None else now
        report = ReapReport()
        await self._notice_deaths(report)
        for cell in list(self.lifecycle.roster.owned.values()):
            if cell.active or cell.state in GONE:
                continue  # the cheap look; _tier looks again under the lock
            async with self.lifecycle.roster.lock(cell):
                await self._tier(cell, now, report)
        return report

    async def _tier(self, cell: Cell, now: float, report: ReapReport) -> None:
        """Under the owner's lock: a call may have started while we waited for it."""
        if cell.active or cell.state in GONE:
            return
        s, life = self.lifecycle.settings, self.lifecycle
        idle = cell.idle_for(now)
        if idle >= s.idle_remove_s:
            await life.remove_locked(cell)
            report.removed += 1
        elif idle >= s.idle_stop_s and cell.state is not CellState.STOPPED:
            await life.stop_locked(cell)
            report.stopped += 1
        elif (
            idle >= s.idle_pause_s
            and cell.state is CellState.RUNNING
            and life.backend.features.supports_pause
        ):
            await life.pause_locked(cell)
            report.paused += 1

    async def put_down(self, owner: str, tier: Tier) -> CellState:
        """The operator's tier for one cell now: ``pause``, ``stop`` or ``remove`` (the
        workspace kept). Work in flight is never cut: a busy cell is a Conflict."""
        cell = self.lifecycle.roster.owned.get(owner)
        if cell is None or cell.state in GONE:
            raise NotFound(
                f"{owner!r} has no cell here", hint="list the cells: GET /v1/admin/cells"
            )
        async with self.lifecycle.roster.lock(cell):
            if cell.active:
                raise Conflict(
                    f"{owner!r}'s cell is working ({cell.active} calls or streams open)",
                    hint="try again when they end; the idle tiers also apply on their own",
                )
            life = self.lifecycle
            if tier == "remove":
                await life.remove_locked(cell)
            elif tier == "stop" and cell.state is not CellState.STOPPED:
                await life.stop_locked(cell)
            elif tier == "pause" and cell.state is CellState.RUNNING:
                if not life.backend.features.supports_pause:
                    raise Conflict("this runtime cannot pause cells", hint="stop it instead")
                await life.pause_locked(cell)
            return cell.state

    async def _notice_deaths(self, report: ReapReport) -> None:
        life = self.lifecycle
        states = {c.container_id: c for c in await asyncio.to_thread(life.backend.list)}
        for cell in life.roster.all():
            if cell.state is not CellState.RUNNING or cell.active:
                continue
            info = states.get(cell.container_id)
            if info is None or info.state is not CellState.RUNNING:
                cell.state = CellState.DEAD
                cell.notice = death_error(info, life.settings.limits.memory_mb)
                report.died += 1
        await self.pool.drop_dead()

    async def run(self) -> None:
        """Reap every ``reap_interval_s`` until cancelled. A failed round is logged and counted,
        whatever it raised, and the next round comes as usual."""
        while True:
            await asyncio.sleep(self.lifecycle.settings.reap_interval_s)
            try:
                report = await self.reap()
            except AgentcellError as exc:  # ours say what happened (the engine is down...)
                self.errors += 1
                log.error("reaper: %s", exc)
                continue
            except Exception:
                self.errors += 1
                log.exception("reaper: the round failed; the next one runs as usual")
                continue
            if report != ReapReport():
                log.info("reaper: %s", report)
