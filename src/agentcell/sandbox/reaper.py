"""Idle cells go down the tiers (paused, stopped, removed; the workspace always kept), and cells
that died on their own are noticed. Never work in flight: a cell with a running call or an open
stream is skipped, and that is checked again under the owner's lock."""

from __future__ import annotations

import asyncio
import logging
import time

from agentcell.errors import AgentcellError
from agentcell.sandbox.base import CellState
from agentcell.sandbox.cell import Cell, death_error
from agentcell.sandbox.lifecycle import Lifecycle
from agentcell.sandbox.pool import WarmPool
from agentcell.sandbox.service import ReapReport

log = logging.getLogger(__name__)

GONE = (CellState.REMOVED, CellState.DEAD)


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
