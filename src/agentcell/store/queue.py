"""The dispatcher's view: everyone's queued and running jobs, and the schedules due.

Not scoped by owner, unlike every other query about a user's things: for the server's
dispatcher and /metrics only, never to answer a user's request with.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from agentcell.store.common import Tables
from agentcell.store.models import Job, Schedule


class JobQueue(Tables):
    async def queued_jobs(self, limit: int = 1000) -> list[Job]:
        """Everyone's queued jobs, oldest first. Dispatcher only: not scoped by owner."""
        query = (
            select(Job).where(Job.state == "queued").order_by(Job.created_at, Job.id).limit(limit)
        )
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def running_jobs(self, node: str | None = None) -> list[Job]:
        """Everyone's running jobs (only those on ``node``, when given), oldest first.
        Dispatcher only: not scoped by owner."""
        query = select(Job).where(Job.state == "running").order_by(Job.created_at, Job.id)
        if node is not None:
            query = query.where(Job.node == node)
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def jobs_by_state(self) -> dict[str, int]:
        """How many jobs are in each state, everyone's (for /metrics); a state no job is in is
        absent. Not scoped by owner."""
        query = select(Job.state, func.count()).group_by(Job.state)
        async with self._session() as session:
            return dict((await session.execute(query)).all())

    async def due_schedules(self, now: datetime) -> list[Schedule]:
        """Everyone's schedules due at ``now`` (not paused, ``next_run_at <= now``), the most
        overdue first. Dispatcher only: not scoped by owner; fire each with ``fire_schedule``."""
        query = (
            select(Schedule)
            .where(
                Schedule.paused.is_(False),
                Schedule.next_run_at.is_not(None),
                Schedule.next_run_at <= now,
            )
            .order_by(Schedule.next_run_at, Schedule.id)
        )
        async with self._session() as session:
            return list((await session.scalars(query)).all())
