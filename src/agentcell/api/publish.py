"""Store rows and cell answers as API v1 answers, for the routes (and /mcp) that share them."""

from __future__ import annotations

from datetime import UTC, datetime

from agentcell.executor.protocol import Entries
from agentcell.schemas import FileEntry, FileList, JobPublic, JobStateChange, SchedulePublic
from agentcell.services.jobs import template_of
from agentcell.store.models import Job, JobEvent, Schedule


def file_list(path: str, page: Entries) -> FileList:
    """A page of a folder's entries."""
    entries = [
        FileEntry(
            name=e.name,
            path=e.path,
            type=e.type,
            size=e.size,
            modified_at=datetime.fromtimestamp(e.modified_at, UTC),
        )
        for e in page.entries
    ]
    return FileList(path=path, entries=entries, next_cursor=page.next_cursor or None)


def job_public(job: Job, events: list[JobEvent] | None = None) -> JobPublic:
    return JobPublic(
        id=job.id,
        name=job.name,
        kind=job.kind,
        state=job.state,
        reason=job.reason,
        language=job.language or None,
        code=job.code,
        file=job.file,
        prompt=job.prompt,
        output_dir=job.output_dir,
        timeout_s=job.timeout_s,
        exit_code=job.exit_code,
        attempt=job.attempt,
        retry_of=job.retry_of,
        schedule_id=job.schedule_id,
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        log_bytes=job.log_bytes,
        events=[JobStateChange(at=e.at, state=e.state, reason=e.reason) for e in events or []],
    )


def schedule_public(schedule: Schedule) -> SchedulePublic:
    return SchedulePublic(
        id=schedule.id,
        name=schedule.name,
        kind=schedule.kind,
        cron=schedule.cron,
        tz=schedule.tz,
        at=schedule.at,
        paused=schedule.paused,
        next_run_at=schedule.next_run_at,
        last_fired_at=schedule.last_fired_at,
        last_job_id=schedule.last_job_id,
        fires=schedule.fires,
        skips=schedule.skips,
        last_skip_reason=schedule.last_skip_reason,
        job=template_of(schedule),
        created_at=schedule.created_at,
    )
