"""Jobs and their state changes (DESIGN §9). Every call about a user's job takes that user's id;
another user's job is "not found". The dispatcher's view of everyone's jobs is in ``queue.py``.

A state change is one conditional UPDATE: of two servers claiming one queued job, the first
UPDATE moves it to "running" and the second finds it "running" already, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, get_args

from sqlalchemy import ColumnElement, delete, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentcell.errors import InvalidRequest, NotFound
from agentcell.schemas import ENDED_STATES, JobState
from agentcell.store.common import Tables, clip, new_id, no_nul
from agentcell.store.models import JOB_NAME_MAX, Job, JobEvent, UTCDateTime, utcnow

JOBS_LIMIT_MAX = 1000
STATES: frozenset[str] = frozenset(get_args(JobState))
LIVE_STATES = tuple(s for s in get_args(JobState) if s not in ENDED_STATES)  # queued, running
# What ``set_job_state`` may set beside the state, and what ``update_job`` may set.
STATE_FIELDS = frozenset({"exit_code", "node", "log_bytes", "started_at", "ended_at"})
UPDATE_FIELDS = frozenset({"name", "exit_code", "node", "log_bytes", "reason"})


def new_job_id() -> str:
    return new_id("j_")


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"no job {job_id!r}", hint="list your jobs to see their ids")


def _check_fields(fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(
            f"fields {sorted(unknown)} cannot be set here; these can: {sorted(allowed)}"
        )


def new_job(
    user_id: str,
    *,
    name: str,
    kind: str,
    language: str | None,
    code: str,
    file: str,
    prompt: str,
    output_dir: str,
    timeout_s: float,
    schedule_id: str | None = None,
    attempt: int = 1,
    retry_of: str | None = None,
    reason: str = "",
    job_id: str | None = None,
) -> tuple[Job, JobEvent]:
    """A queued job's row and its first event, to add in one transaction. ``output_dir`` ""
    is the job's own ``jobs/<id>``."""
    job_id = job_id or new_job_id()
    now = utcnow()
    job = Job(
        id=job_id,
        user_id=user_id,
        name=clip(name, JOB_NAME_MAX),
        kind=kind,
        language=language or "",
        code=no_nul(code),
        file=no_nul(file),
        prompt=no_nul(prompt),
        output_dir=no_nul(output_dir) or f"jobs/{job_id}",
        timeout_s=timeout_s,
        state="queued",
        reason=no_nul(reason),
        exit_code=None,
        schedule_id=schedule_id,
        attempt=attempt,
        retry_of=retry_of,
        node="",
        log_bytes=0,
        created_at=now,
        started_at=None,
        ended_at=None,
    )
    return job, JobEvent(job_id=job_id, at=now, state="queued", reason=job.reason)


async def _owned(session: AsyncSession, user_id: str, job_id: str) -> Job:
    job = await session.scalar(select(Job).where(Job.id == job_id, Job.user_id == user_id))
    if job is None:
        raise job_not_found(job_id)
    return job


class JobTable(Tables):
    async def add_job(
        self,
        user_id: str,
        *,
        name: str,
        kind: str,
        language: str | None,
        code: str,
        file: str,
        prompt: str,
        output_dir: str,
        timeout_s: float,
        schedule_id: str | None = None,
        attempt: int = 1,
        retry_of: str | None = None,
        reason: str = "",
    ) -> Job:
        """A new job, "queued", with its first event (``reason`` is that event's). An empty
        ``output_dir`` becomes ``jobs/<id>``. NotFound when there is no such user (or no such
        schedule)."""
        job, event = new_job(
            user_id,
            name=name,
            kind=kind,
            language=language,
            code=code,
            file=file,
            prompt=prompt,
            output_dir=output_dir,
            timeout_s=timeout_s,
            schedule_id=schedule_id,
            attempt=attempt,
            retry_of=retry_of,
            reason=reason,
        )
        async with self._session() as session:
            try:
                session.add(job)
                await session.flush()  # the job's row first: the event refers to it
                session.add(event)
                await session.commit()
            except IntegrityError:
                also = f" or no schedule {schedule_id!r}" if schedule_id else ""
                raise NotFound(f"no user {user_id!r}{also}") from None
        return job

    async def get_job(self, user_id: str, job_id: str) -> Job:
        """The user's job; NotFound when the user has none of that id."""
        async with self._session() as session:
            return await _owned(session, user_id, job_id)

    async def list_jobs(
        self, user_id: str, *, state: str | None = None, limit: int = 100
    ) -> list[Job]:
        """The user's jobs, newest first; only those in ``state`` when it is given."""
        if not 1 <= limit <= JOBS_LIMIT_MAX:
            raise InvalidRequest(
                f"limit {limit} out of range", hint=f"ask for 1 to {JOBS_LIMIT_MAX} jobs"
            )
        query = (
            select(Job)
            .where(Job.user_id == user_id)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(limit)
        )
        if state is not None:
            query = query.where(Job.state == state)
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def job_events(self, user_id: str, job_id: str) -> list[JobEvent]:
        """Every state change of the user's job, oldest first; NotFound when not theirs."""
        query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        async with self._session() as session:
            await _owned(session, user_id, job_id)
            return list((await session.scalars(query)).all())

    async def set_job_state(
        self,
        user_id: str,
        job_id: str,
        state: str,
        reason: str,
        *,
        expect: Collection[str] | None = None,
        **fields: Any,
    ) -> Job | None:
        """Move the job to ``state`` for ``reason``, in one transaction with its event, if its
        state now is one of ``expect`` (None: any it has not ended in). Going "running" sets
        ``started_at`` (kept if it had one), going to an ended state ``ended_at``, unless
        ``fields`` give them; ``fields`` may also set exit_code, node and log_bytes.

        Returns the job as updated, or None when its state was not expected (another server
        claimed it first, or it has ended). NotFound when the user has no such job.
        """
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}: one of {sorted(STATES)}")
        _check_fields(fields, STATE_FIELDS)
        now = utcnow()
        values: dict[str, Any] = {"state": state, "reason": no_nul(reason)}
        if state == "running" and "started_at" not in fields:
            values["started_at"] = func.coalesce(Job.started_at, literal(now, UTCDateTime()))
        if state in ENDED_STATES and "ended_at" not in fields:
            values["ended_at"] = now
        values.update(fields)
        current: ColumnElement[bool] = (
            Job.state.in_(list(expect)) if expect is not None else Job.state.in_(LIVE_STATES)
        )
        query = (
            update(Job)
            .where(Job.id == job_id, Job.user_id == user_id, current)
            .values(values)
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as session:
            job = (await session.scalars(query)).first()
            if job is None:
                await _owned(session, user_id, job_id)  # NotFound, or else: not expected
                return None
            session.add(JobEvent(job_id=job_id, at=now, state=state, reason=values["reason"]))
            await session.commit()
        return job

    async def update_job(self, user_id: str, job_id: str, **fields: Any) -> Job:
        """Set fields of the user's job other than its state (log_bytes, node, exit_code, name,
        reason). Returns the job as updated; NotFound when the user has no such job."""
        _check_fields(fields, UPDATE_FIELDS)
        if "name" in fields:
            fields["name"] = clip(fields["name"], JOB_NAME_MAX)
        if "reason" in fields:
            fields["reason"] = no_nul(fields["reason"])
        query = (
            update(Job)
            .where(Job.id == job_id, Job.user_id == user_id)
            .values(fields)
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as session:
            job = (await session.scalars(query)).first() if fields else None
            if job is None:
                return await _owned(session, user_id, job_id)
            await session.commit()
        return job

    async def delete_job(self, user_id: str, job_id: str) -> None:
        """Delete the user's job and its events; NotFound when the user has no such job."""
        query = delete(Job).where(Job.id == job_id, Job.user_id == user_id).returning(Job.id)
        async with self._session() as session:
            deleted = await session.scalar(query)
            await session.commit()
        if deleted is None:
            raise job_not_found(job_id)

    async def count_jobs(self, user_id: str) -> tuple[int, int]:
        """How many of the user's jobs are (running, queued)."""
        query = (
            select(Job.state, func.count())
            .where(Job.user_id == user_id, Job.state.in_(LIVE_STATES))
            .group_by(Job.state)
        )
        async with self._session() as session:
            counts: dict[str, int] = dict((await session.execute(query)).all())
        return counts.get("running", 0), counts.get("queued", 0)
