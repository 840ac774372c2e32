"""The shapes of the jobs calls (DESIGN §9): what ``POST /v1/jobs`` is asked to run, and how
the answers are read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import httpx
from pydantic import Field, TypeAdapter

from agentcell.errors import InvalidRequest
from agentcell.schemas import (
    JobKind,
    JobList,
    JobLogChunk,
    JobPublic,
    Language,
    ScheduleList,
    SchedulePublic,
)

# POST /v1/jobs answers a job, or (with a schedule) the schedule: told apart by ``object``.
_JOB_OR_SCHEDULE: TypeAdapter[JobPublic | SchedulePublic] = TypeAdapter(
    Annotated[JobPublic | SchedulePublic, Field(discriminator="object")]
)


def job_or_schedule(response: httpx.Response) -> JobPublic | SchedulePublic:
    return _JOB_OR_SCHEDULE.validate_json(response.content)


def jobs(response: httpx.Response) -> list[JobPublic]:
    return JobList.model_validate_json(response.content).jobs


def schedules(response: httpx.Response) -> list[SchedulePublic]:
    return ScheduleList.model_validate_json(response.content).schedules


def log_from(offset: int) -> Callable[[httpx.Response], JobLogChunk]:
    """A log's text from ``offset``, and the offset after it (``X-Log-Offset``)."""

    def parse(response: httpx.Response) -> JobLogChunk:
        after = response.headers.get("X-Log-Offset")
        end = int(after) if after and after.isdigit() else offset + len(response.content)
        return JobLogChunk(text=response.content.decode(errors="replace"), offset=end)

    return parse


@dataclass(frozen=True)
class JobSpec:
    """What ``POST /v1/jobs`` is asked to run; ``at`` or ``cron`` (with ``tz``) schedule it."""

    kind: JobKind = "exec"
    code: str | None = None
    file: str | None = None
    prompt: str | None = None
    language: Language | None = None
    name: str | None = None
    timeout_s: float | None = None
    output_dir: str | None = None
    at: datetime | str | None = None
    cron: str | None = None
    tz: str | None = None

    def body(self) -> dict[str, Any]:
        fields = ("code", "file", "prompt", "language", "name", "timeout_s", "output_dir")
        body: dict[str, Any] = {"kind": self.kind}
        body |= {f: getattr(self, f) for f in fields if getattr(self, f) is not None}
        if schedule := self._schedule():
            body["schedule"] = schedule
        return body

    def _schedule(self) -> dict[str, str] | None:
        if self.at is not None and self.cron is not None:
            raise InvalidRequest(
                "a job is scheduled at a time or by cron, not both", hint="give at or cron"
            )
        if self.tz is not None and self.cron is None:
            raise InvalidRequest(
                "a time zone goes with a cron schedule", hint="give cron with tz, or no tz"
            )
        if self.cron is not None:
            return {"cron": self.cron} | ({"tz": self.tz} if self.tz is not None else {})
        if isinstance(self.at, datetime):
            return {"at": self.at.astimezone().isoformat()}  # naive: this host's local time
        if self.at is not None:
            return {"at": self.at}
        return None
