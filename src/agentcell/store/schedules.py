"""Schedules: what starts a job later, once (``at``) or at each cron match (DESIGN §9). Every
call takes the owner's id; another user's schedule is "not found". The schedules due now,
everyone's, are the dispatcher's: ``queue.py``.

A fire is optimistic: it applies only while the schedule still waits for the fire it was
computed for (``next_run_at == due_at``), so of two servers firing one schedule, one does.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentcell.errors import NotFound
from agentcell.store.common import Tables, clip, new_id, no_nul
from agentcell.store.jobs import new_job
from agentcell.store.models import JOB_NAME_MAX, Job, Schedule, utcnow


def schedule_not_found(schedule_id: str) -> NotFound:
    return NotFound(f"no schedule {schedule_id!r}", hint="list your schedules to see their ids")


async def _owned(session: AsyncSession, user_id: str, schedule_id: str) -> Schedule:
    query = select(Schedule).where(Schedule.id == schedule_id, Schedule.user_id == user_id)
    schedule = await session.scalar(query)
    if schedule is None:
        raise schedule_not_found(schedule_id)
    return schedule


def _mine(user_id: str, schedule_id: str) -> ColumnElement[bool]:
    return and_(Schedule.id == schedule_id, Schedule.user_id == user_id)


class ScheduleTable(Tables):
    async def add_schedule(
        self,
        user_id: str,
        *,
        name: str,
        kind: str,
        cron: str,
        tz: str,
        at: datetime | None,
        job: dict[str, Any],
        next_run_at: datetime | None,
    ) -> Schedule:
        """A new schedule (``kind`` "at" or "cron") that starts jobs made of ``job`` (the
        ``schemas.JobTemplate`` fields), first at ``next_run_at``. NotFound when there is no
        such user."""
        row = Schedule(
            id=new_id("sc_"),
            user_id=user_id,
            name=clip(name, JOB_NAME_MAX),
            kind=kind,
            cron=cron,
            tz=tz,
            at=at,
            job=json.dumps(job),
            paused=False,
            next_run_at=next_run_at,
            created_at=utcnow(),
            last_fired_at=None,
            last_job_id=None,
            fires=0,
            skips=0,
            last_skip_reason="",
        )
        async with self._session() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise NotFound(f"no user {user_id!r}") from None
        return row

    async def get_schedule(self, user_id: str, schedule_id: str) -> Schedule:
        """The user's schedule; NotFound when the user has none of that id."""
        async with self._session() as session:
            return await _owned(session, user_id, schedule_id)

    async def list_schedules(self, user_id: str) -> list[Schedule]:
        """The user's schedules, newest first."""
        query = (
            select(Schedule)
            .where(Schedule.user_id == user_id)
            .order_by(Schedule.created_at.desc(), Schedule.id.desc())
        )
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def delete_schedule(self, user_id: str, schedule_id: str) -> None:
        """Delete the user's schedule. The jobs it started stay, their ``schedule_id`` NULL.
        NotFound when the user has no such schedule."""
        query = delete(Schedule).where(_mine(user_id, schedule_id)).returning(Schedule.id)
        async with self._session() as session:
            deleted = await session.scalar(query)
            await session.commit()
        if deleted is None:
            raise schedule_not_found(schedule_id)

    async def set_schedule_paused(
        self, user_id: str, schedule_id: str, paused: bool, next_run_at: datetime | None
    ) -> Schedule:
        """Pause or resume the user's schedule, with its next fire time (a resumed schedule
        fires next when it would have, not for the fires it missed). NotFound when the user
        has no such schedule."""
        query = (
            update(Schedule)
            .where(_mine(user_id, schedule_id))
            .values(paused=paused, next_run_at=next_run_at)
            .returning(Schedule)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as session:
            schedule = (await session.scalars(query)).first()
            if schedule is None:
                raise schedule_not_found(schedule_id)
            await session.commit()
        return schedule

    async def fire_schedule(
        self,
        user_id: str,
        schedule_id: str,
        *,
        due_at: datetime,
        next_run_at: datetime | None,
        job: dict[str, Any] | None,
        skip_reason: str = "",
    ) -> Job | None:
        """Fire the user's schedule for the time it was due, in one transaction: it moves to
        ``next_run_at`` (None: no more fires), and either starts a queued job of ``job`` (the
        ``add_job`` fields; ``fires`` and ``last_job_id`` follow) or, when ``job`` is None,
        counts a skip for ``skip_reason``.

        Returns the job started; None when the fire did not apply (the schedule was fired for
        ``due_at`` already, by this server or another, or was paused or moved meanwhile) or
        was a skip. NotFound when the user has no such schedule.
        """
        values: dict[str, Any] = {"next_run_at": next_run_at, "last_fired_at": utcnow()}
        made = None
        if job is not None:
            made, event = new_job(user_id, schedule_id=schedule_id, **job)
            values.update(fires=Schedule.fires + 1, last_job_id=made.id)
        else:
            values.update(skips=Schedule.skips + 1, last_skip_reason=no_nul(skip_reason))
        query = (
            update(Schedule)
            .where(
                _mine(user_id, schedule_id),
                Schedule.next_run_at == due_at,
                Schedule.paused.is_(False),
            )
            .values(values)
            .returning(Schedule.id)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as session:
            if await session.scalar(query) is None:
                await _owned(session, user_id, schedule_id)  # NotFound, or else: not due
                return None
            try:
                if made is not None:
                    session.add(made)
                    await session.flush()  # the job's row first: its event refers to it
                    session.add(event)
                await session.commit()
            except IntegrityError:  # the user went meanwhile
                raise schedule_not_found(schedule_id) from None
        return made
