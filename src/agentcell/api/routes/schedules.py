"""Schedules (``services.jobs``): what starts a job at a time, or at every fire of a cron
expression. Another user's schedule answers 404."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from agentcell.api.deps import CurrentUser, ServicesDep
from agentcell.api.publish import schedule_public
from agentcell.schemas import ScheduleList, SchedulePublic

router = APIRouter(prefix="/v1/schedules", tags=["jobs"])


@router.get("")
async def list_schedules(user: CurrentUser, services: ServicesDep) -> ScheduleList:
    """Your schedules (create one with ``POST /v1/jobs`` and a ``schedule``)."""
    schedules = await services.jobs.schedules(user.id)
    return ScheduleList(schedules=[schedule_public(s) for s in schedules])


@router.get("/{schedule_id}")
async def get_schedule(
    schedule_id: str, user: CurrentUser, services: ServicesDep
) -> SchedulePublic:
    return schedule_public(await services.jobs.schedule(user.id, schedule_id))


@router.post("/{schedule_id}/pause")
async def pause_schedule(
    schedule_id: str, user: CurrentUser, services: ServicesDep
) -> SchedulePublic:
    """Stop firing until resumed."""
    return schedule_public(await services.jobs.pause(user.id, schedule_id, True))


@router.post("/{schedule_id}/resume")
async def resume_schedule(
    schedule_id: str, user: CurrentUser, services: ServicesDep
) -> SchedulePublic:
    """Fire again: a cron schedule's next fire is computed from now (fires missed while it was
    paused are not made up); an ``at`` whose time has passed fires at once."""
    return schedule_public(await services.jobs.pause(user.id, schedule_id, False))


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_schedule(schedule_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    """Delete the schedule; the jobs it started stay."""
    await services.jobs.delete_schedule(user.id, schedule_id)
    return Response(status_code=204)
