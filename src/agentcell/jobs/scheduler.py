"""Schedules fire: each due schedule starts a job from its template.

Policy, also in the README: a schedule is due when its ``next_run_at`` has passed. Fires missed
while no server ran (or the schedule was paused) are not made up one by one: a due schedule
fires once, and its next fire is computed from now. A fire while the schedule's last job is
still queued or running is skipped, and the skip is recorded on the schedule. Of several
servers, one fires each due time (the store's update is conditional on ``next_run_at``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from agentcell.errors import AgentcellError, NotFound
from agentcell.jobs.when import next_fire
from agentcell.schemas import ENDED_STATES
from agentcell.store import Store
from agentcell.store.models import Job, Schedule, utcnow

log = logging.getLogger(__name__)

POLL_S = 1.0  # due schedules are looked for this often: a fire is at most this late

Fired = Callable[[Schedule, Job | None, str], Coroutine[Any, Any, None]]
"""Told of each fire: the schedule, the job it queued (None: skipped) and why it skipped."""


def following(schedule: Schedule, now: datetime) -> datetime | None:
    """The schedule's next fire after one at ``now``: None for ``at`` (it fires once)."""
    return next_fire(schedule.cron, schedule.tz, now) if schedule.kind == "cron" else None


class Scheduler:
    def __init__(self, store: Store, on_fire: Fired) -> None:
        self.store, self._on_fire = store, on_fire
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="job scheduler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _serve(self) -> None:
        while True:
            try:
                await self.fire_due()
            except Exception:  # the next round tries again
                log.exception("firing schedules failed")
            await asyncio.sleep(POLL_S)

    async def fire_due(self, now: datetime | None = None) -> None:
        now = now or utcnow()
        for schedule in await self.store.due_schedules(now):
            with contextlib.suppress(NotFound):  # deleted meanwhile
                await self._fire(schedule, now)

    async def _fire(self, schedule: Schedule, now: datetime) -> None:
        assert schedule.next_run_at is not None, "a due schedule has its time"
        skip = await self._busy(schedule)
        template = json.loads(schedule.job)
        job = await self.store.fire_schedule(
            schedule.user_id,
            schedule.id,
            due_at=schedule.next_run_at,
            next_run_at=following(schedule, now),
            job=None if skip else template,
            skip_reason=skip,
        )
        if job is not None or skip:
            await self._on_fire(schedule, job, skip)

    async def _busy(self, schedule: Schedule) -> str:
        """Why this fire is skipped ("" if it is not): the schedule's last job still runs."""
        if schedule.last_job_id is None:
            return ""
        try:
            last = await self.store.get_job(schedule.user_id, schedule.last_job_id)
        except AgentcellError:
            return ""  # deleted: nothing runs
        if last.state in ENDED_STATES:
            return ""
        return f"its last job {last.id} was still {last.state} at the time of this fire"
