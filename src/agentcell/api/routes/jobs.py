"""Jobs (``services.jobs``): work handed off, watched, cancelled, downloaded. Another user's job
answers 404, as one that does not exist."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from agentcell.api.deps import CurrentUser, ServicesDep, SettingsDep
from agentcell.api.publish import job_public, schedule_public
from agentcell.api.schemas import JobCreate, ScheduleAt
from agentcell.api.sse import SSE_HEADERS, sse
from agentcell.api.streams import TimedStreamingResponse
from agentcell.errors import AgentcellError, InvalidRequest
from agentcell.schemas import JobList, JobLogChunk, JobPublic, JobState, SchedulePublic
from agentcell.services.joblogs import LogEvent
from agentcell.services.jobs import JobSpec, When
from agentcell.store.models import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic | SchedulePublic,
)
async def create_job(body: JobCreate, user: CurrentUser, services: ServicesDep) -> JSONResponse:
    """Queue a job, or (with ``schedule``) keep a schedule that starts one at each fire: the
    answer is the job, or the schedule (its ``object`` says which)."""
    spec = JobSpec(**body.model_dump(exclude={"schedule"}))
    when = None
    if isinstance(body.schedule, ScheduleAt):
        when = When(at=body.schedule.at)
    elif body.schedule is not None:
        when = When(cron=body.schedule.cron, tz=body.schedule.tz)
    made = await services.jobs.submit(user.id, spec, when)
    public = job_public(made) if isinstance(made, Job) else schedule_public(made)
    return JSONResponse(public.model_dump(mode="json"), status_code=201)


@router.get("")
async def list_jobs(
    user: CurrentUser,
    services: ServicesDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobList:
    """Your jobs, newest first."""
    jobs = await services.jobs.list_jobs(user.id, state, limit)
    return JobList(jobs=[job_public(j) for j in jobs])


@router.get("/{job_id}")
async def get_job(job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    """The job, with every change of its state."""
    job, events = await services.jobs.get(user.id, job_id)
    return job_public(job, events)


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    """Cancel a queued or running job: when this answers, its whole process tree is gone.
    409 when it has ended."""
    return job_public(await services.jobs.cancel(user.id, job_id))


@router.post("/{job_id}/retry", status_code=status.HTTP_201_CREATED)
async def retry_job(job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    """A new attempt of an ended job: a new job, ``attempt`` + 1, ``retry_of`` this one."""
    return job_public(await services.jobs.retry(user.id, job_id))


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_job(job_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    """Delete the job and its log (cancelled first if it runs); its default output folder
    ``jobs/<id>`` goes too, a folder you named stays."""
    await services.jobs.delete(user.id, job_id)
    return Response(status_code=204)


async def _log_stream(events: AsyncGenerator[LogEvent, None]) -> AsyncGenerator[bytes, None]:
    try:
        async for event in events:
            if event is None:
                yield b": waiting\n\n"
            elif isinstance(event, JobLogChunk):
                yield f"id: {event.offset}\n".encode() + sse("log", event.model_dump())
            else:
                yield sse("end", event.model_dump())
    except AgentcellError as exc:
        yield sse("error", {"code": exc.code, "message": exc.message, "hint": exc.hint})


def _offset(offset: int, last_event_id: str | None) -> int:
    if last_event_id is None:
        return offset
    if not last_event_id.isdigit():
        raise InvalidRequest(
            "Last-Event-ID must be a byte offset", hint="send the id of the last event you got"
        )
    return int(last_event_id)


@router.get(
    "/{job_id}/logs",
    responses={200: {"content": {"text/plain": {}, "text/event-stream": {}}}},
)
async def job_logs(
    job_id: str,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    settings: SettingsDep,
    offset: Annotated[int, Query(ge=0, description="the byte to start from")] = 0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Response:
    """The log from ``offset``, as text (``X-Log-Offset``: the offset after it). With
    ``Accept: text/event-stream``, SSE that follows it: ``log`` events (``id:`` the offset
    after each, to resume with ``Last-Event-ID``), then ``end`` once the job has ended."""
    start = _offset(offset, last_event_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        data, after = await services.joblogs.text(user.id, job_id, start)
        headers = {"X-Log-Offset": str(after)}
        return Response(data, media_type="text/plain; charset=utf-8", headers=headers)
    events = await services.joblogs.follow(user.id, job_id, start)
    return TimedStreamingResponse(
        _log_stream(events),
        settings.stream_send_timeout_s,
        "text/event-stream",
        SSE_HEADERS,
        on_close=events.aclose,
    )


@router.get(
    "/{job_id}/artifacts",
    responses={200: {"content": {"application/zip": {}}}},
)
async def job_artifacts(
    job_id: str, user: CurrentUser, services: ServicesDep, settings: SettingsDep
) -> Response:
    """The job's output folder as a ZIP, made in the cell as it streams (links left out)."""
    found = await services.joblogs.artifacts(user.id, job_id)
    chunks = found.chunks
    name = f"{job_id}.zip"
    return TimedStreamingResponse(
        chunks.items,
        settings.stream_send_timeout_s,
        "application/zip",
        {"Content-Disposition": f'attachment; filename="{name}"'},
        on_close=chunks.close,
    )
