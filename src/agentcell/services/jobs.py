"""Jobs and schedules (DESIGN §9): work handed off and come back to. Each call takes the
owner's id; another user's job or schedule is NotFound. The dispatcher (``agentcell.jobs``)
runs what is queued here."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol

from agentcell.config import Settings
from agentcell.errors import Conflict, InvalidRequest, NotFound, TooManyJobs
from agentcell.jobs.dispatcher import Dispatcher
from agentcell.jobs.scheduler import Scheduler
from agentcell.jobs.when import check_cron, next_fire, parse_at, zone
from agentcell.sandbox.service import CellService
from agentcell.schemas import ENDED_STATES, JobTemplate
from agentcell.services.audit import Action, Audit
from agentcell.services.files import checked
from agentcell.store import Store
from agentcell.store.models import Job, JobEvent, Schedule, utcnow

NAME_CHARS = 100
RETRY_AFTER_S = 10.0  # what a user over their job limit is told to wait


@dataclass(frozen=True)
class JobSpec:
    """What to run: the fields of ``POST /v1/jobs`` (the schedule apart)."""

    kind: Literal["exec", "agent"]
    language: Literal["python", "shell"] | None = None
    code: str = ""
    file: str = ""
    prompt: str = ""
    name: str = ""
    timeout_s: float | None = None
    output_dir: str = ""


@dataclass(frozen=True)
class When:
    """When to run it: ``at`` once, or at every fire of ``cron`` in ``tz``."""

    at: datetime | None = None
    cron: str = ""
    tz: str = "UTC"


def _name(spec: JobSpec) -> str:
    if spec.name:
        return spec.name
    source = spec.prompt or spec.code or PurePosixPath(spec.file).name
    first = source.strip().splitlines()[0] if source.strip() else spec.kind
    return first[:40]


class JobObserver(Protocol):
    """Told of each job's start (how long it was queued) and end (the server's metrics)."""

    def observe_job_start(self, kind: str, waited_s: float) -> None: ...

    def observe_job_end(self, kind: str, state: str) -> None: ...


class Jobs:
    def __init__(
        self,
        store: Store,
        cells: CellService,
        settings: Settings,
        audit: Audit,
        dispatcher: Dispatcher,
        scheduler: Scheduler,
        check_model: Callable[[], object],
    ) -> None:
        self.store, self.settings, self._audit = store, settings, audit
        self._cells = cells
        self.dispatcher, self.scheduler = dispatcher, scheduler
        self._check_model = check_model

    # --- submit ----------------------------------------------------------------------------

    def template(self, spec: JobSpec) -> JobTemplate:
        """The job checked and completed (defaults filled in), or InvalidRequest/InvalidPath."""
        s = self.settings
        if spec.kind == "exec":
            if bool(spec.code) == bool(spec.file):
                raise InvalidRequest(
                    "an exec job runs either code or a file", hint="send one of code or file"
                )
            if len(spec.code.encode()) > s.max_code_bytes:
                raise InvalidRequest(
                    f"code is longer than {s.max_code_bytes} bytes",
                    hint="write the program to a file in the workspace and run the file",
                )
            if spec.prompt:
                raise InvalidRequest("an exec job has no prompt", hint="send code or a file")
        elif spec.kind == "agent":
            if not spec.prompt.strip():
                raise InvalidRequest(
                    "an agent job needs a prompt", hint="say what the agent is to do"
                )
            if spec.code or spec.file:
                raise InvalidRequest("an agent job has no code or file", hint="send only a prompt")
            self._check_model()
        else:
            raise InvalidRequest(f"unknown job kind {spec.kind!r}", hint="kind is exec or agent")
        timeout = s.job_timeout_s if spec.timeout_s is None else spec.timeout_s
        if not 0 < timeout <= s.job_timeout_max_s:
            raise InvalidRequest(
                f"timeout_s must be above 0 and at most {s.job_timeout_max_s:g} s",
                hint="give a shorter timeout, or ask for a larger AGENTCELL_JOB_TIMEOUT_MAX_S",
            )
        output = checked(spec.output_dir, allow_root=False) if spec.output_dir else ""
        return JobTemplate(
            kind=spec.kind,
            name=_name(spec)[:NAME_CHARS],
            language=(spec.language or "python") if spec.kind == "exec" else None,
            code=spec.code,
            file=checked(spec.file, allow_root=False) if spec.file else "",
            prompt=spec.prompt,
            output_dir=output,
            timeout_s=timeout,
        )

    async def submit(self, owner: str, spec: JobSpec, when: When | None = None) -> Job | Schedule:
        """Queue the job now, or keep its schedule: the job or the schedule."""
        template = self.template(spec)
        if when is not None:
            return await self._schedule(owner, template, when)
        await self._room_for_one(owner)
        job = await self.store.add_job(owner, **_job_fields(template))
        self.dispatcher.nudge()
        await self._audit.record(owner, "job.create", target=job.id, detail=job.name)
        return job

    async def _room_for_one(self, owner: str) -> None:
        running, queued = await self.store.count_jobs(owner)
        limit = self.settings.jobs_per_user_max
        if running + queued >= limit:
            raise TooManyJobs(
                f"you have {running} jobs running and {queued} queued; the limit is {limit}",
                retry_after_s=RETRY_AFTER_S,
            )

    async def _schedule(self, owner: str, template: JobTemplate, when: When) -> Schedule:
        now = utcnow()
        if (when.at is None) == (not when.cron):
            raise InvalidRequest(
                "a schedule has either at or cron", hint="send {at: ISO-8601} or {cron, tz}"
            )
        if when.cron:
            check_cron(when.cron)
            zone(when.tz)
            first = next_fire(when.cron, when.tz, now)
        else:
            assert when.at is not None
            first = parse_at(when.at, now)
        if len(await self.store.list_schedules(owner)) >= self.settings.schedules_per_user_max:
            raise TooManyJobs(
                f"you have {self.settings.schedules_per_user_max} schedules, the limit",
                retry_after_s=RETRY_AFTER_S,
                hint="delete a schedule you no longer need, then create this one",
            )
        schedule = await self.store.add_schedule(
            owner,
            name=template.name,
            kind="cron" if when.cron else "at",
            cron=when.cron,
            tz=when.tz if when.cron else "UTC",
            at=first if when.at is not None else None,
            job=_job_fields(template),
            next_run_at=first,
        )
        await self._audit.record(
            owner, "schedule.create", target=schedule.id, detail=when.cron or first.isoformat()
        )
        return schedule

    async def by_state(self) -> dict[str, int]:
        """Every user's jobs by state (/metrics)."""
        return await self.store.jobs_by_state()

    # --- one job ---------------------------------------------------------------------------

    async def get(self, owner: str, job_id: str) -> tuple[Job, list[JobEvent]]:
        job = await self.store.get_job(owner, job_id)
        return job, await self.store.job_events(owner, job_id)

    async def list_jobs(self, owner: str, state: str | None, limit: int) -> list[Job]:
        return await self.store.list_jobs(owner, state=state, limit=limit)

    async def cancel(self, owner: str, job_id: str) -> Job:
        job = await self.store.get_job(owner, job_id)
        if job.state in ENDED_STATES:
            raise _ended(job, "cancelled")
        cancelled = await self.dispatcher.cancel(job, "cancelled by its owner")
        if cancelled is None:
            raise _ended(await self.store.get_job(owner, job_id), "cancelled")
        await self._audit.record(owner, "job.cancel", target=job_id, detail=cancelled.state)
        return cancelled

    async def retry(self, owner: str, job_id: str) -> Job:
        """A new attempt of an ended job (its output folder is the same)."""
        old = await self.store.get_job(owner, job_id)
        if old.state not in ENDED_STATES:
            raise Conflict(
                f"job {job_id} is still {old.state}",
                hint="retry it once it has ended, or cancel it",
            )
        await self._room_for_one(owner)
        fields = {
            k: getattr(old, k) for k in ("name", "kind", "language", "code", "file", "prompt")
        }
        job = await self.store.add_job(
            owner,
            **fields,
            output_dir=old.output_dir,
            timeout_s=old.timeout_s,
            schedule_id=old.schedule_id,
            attempt=old.attempt + 1,
            retry_of=old.id,
        )
        self.dispatcher.nudge()
        await self._audit.record(owner, "job.retry", target=job.id, detail=f"retry of {old.id}")
        return job

    async def delete(self, owner: str, job_id: str) -> None:
        """Delete the job, its log and (for the default ``jobs/<id>`` folder) its output; a
        job still running is cancelled first."""
        job = await self.store.get_job(owner, job_id)
        if job.state not in ENDED_STATES:
            await self.dispatcher.cancel(job, "deleted by its owner")
        if await self._cells.status(owner) is not None:  # else nothing of it is in a cell
            with contextlib.suppress(NotFound):
                await self._cells.forget_job(owner, job_id)
            if job.output_dir == f"jobs/{job.id}":
                with contextlib.suppress(NotFound):
                    await self._cells.delete(owner, job.output_dir, recursive=True)
        await self.store.delete_job(owner, job_id)
        await self._audit.record(owner, "job.delete", target=job_id)

    # --- schedules -------------------------------------------------------------------------

    async def schedules(self, owner: str) -> list[Schedule]:
        return await self.store.list_schedules(owner)

    async def schedule(self, owner: str, schedule_id: str) -> Schedule:
        return await self.store.get_schedule(owner, schedule_id)

    async def pause(self, owner: str, schedule_id: str, paused: bool) -> Schedule:
        """Pause or resume; a resumed schedule's next fire is computed from now (what it missed
        while paused is not made up; an ``at`` whose time passed fires at once)."""
        schedule = await self.store.get_schedule(owner, schedule_id)
        upcoming = schedule.next_run_at
        if not paused and schedule.kind == "cron":
            upcoming = next_fire(schedule.cron, schedule.tz, utcnow())
        changed = await self.store.set_schedule_paused(owner, schedule_id, paused, upcoming)
        action: Action = "schedule.pause" if paused else "schedule.resume"
        await self._audit.record(owner, action, target=schedule_id)
        return changed

    async def delete_schedule(self, owner: str, schedule_id: str) -> None:
        """Delete the schedule; the jobs it started stay."""
        await self.store.delete_schedule(owner, schedule_id)
        await self._audit.record(owner, "schedule.delete", target=schedule_id)


def _job_fields(template: JobTemplate) -> dict[str, Any]:
    fields = template.model_dump()
    del fields["kind"]
    return {"kind": template.kind, **fields, "language": template.language or ""}


def template_of(schedule: Schedule) -> JobTemplate:
    fields = json.loads(schedule.job)
    return JobTemplate.model_validate({**fields, "language": fields.get("language") or None})


def _ended(job: Job, verb: str) -> Conflict:
    return Conflict(
        f"job {job.id} has ended ({job.state}): it cannot be {verb}",
        hint="see its state and log; retry it to run it again",
    )


class JobServers:
    """The coder's long-running servers as jobs of the turn's owner (``agent.tools.Servers``):
    listed, logged and cancelled like any job of theirs."""

    def __init__(self, jobs: Jobs, owner: str) -> None:
        self._jobs, self._owner = jobs, owner

    async def start(self, command: str, name: str) -> str:
        spec = JobSpec(
            kind="exec",
            language="shell",
            code=command,
            name=name,
            timeout_s=self._jobs.settings.job_timeout_max_s,  # until the user cancels it
        )
        job = await self._jobs.submit(self._owner, spec)
        return job.id

    async def ended(self, job_id: str) -> str | None:
        job, _ = await self._jobs.get(self._owner, job_id)
        return None if job.state in ("queued", "running") else job.state
