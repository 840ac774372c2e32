"""The audit log: a user sees their own events, the admin sees everyone's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from agentcell.api.deps import PrincipalDep, ServicesDep
from agentcell.errors import InvalidRequest
from agentcell.schemas import AuditEventPublic, AuditPage

router = APIRouter(prefix="/v1/audit", tags=["audit"])
ISO_TIME = r"^\d{4}-\d\d-\d\dT"  # ISO 8601 with a time, e.g. 2026-12-03T14:00:00+01:00


def _time(text: str) -> datetime | None:
    """An ISO 8601 time (UTC unless it says its offset), or None for no time."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{text[:40]!r} is not a time", hint="give ISO 8601, e.g. 2026-12-03T14:00:00+01:00"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@router.get("")
async def audit(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, description="an event id: older events")] = None,
    kind: Annotated[
        str,
        Query(
            max_length=64,
            pattern=r"^[a-z_.]*$",
            description="only events of this kind: egress, exec, job, file, network, secret...",
        ),
    ] = "",
    user: Annotated[
        str, Query(max_length=64, description="the admin: only this user's events (an id)")
    ] = "",
    since: Annotated[str, Query(pattern=ISO_TIME, description="events at or after this time")] = "",
    until: Annotated[str, Query(pattern=ISO_TIME, description="events before this time")] = "",
) -> AuditPage:
    """Your events, newest first (the admin sees everyone's, or one ``user``'s)."""
    if principal.user is not None and user not in ("", principal.user.id):
        return AuditPage(events=[], next_before=None)  # a user's own trail only
    owner = principal.user.id if principal.user else user or None
    events = await services.audit.events(
        owner, limit=limit, before_id=before, kind=kind, since=_time(since), until=_time(until)
    )
    page = [AuditEventPublic.model_validate(e, from_attributes=True) for e in events]
    return AuditPage(events=page, next_before=page[-1].id if len(page) == limit else None)
