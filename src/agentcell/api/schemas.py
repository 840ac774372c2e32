"""API v1's request bodies (DESIGN §7), with the server's limits. What it answers is shared
with the clients: ``agentcell.schemas``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from agentcell.schemas import SECRET_VALUE_MAX, HostName, JobKind, Language, host_pattern
from agentcell.store.models import TITLE_MAX

CONTEXT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["alice"])


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=1, max_length=200, description="an API key, or the admin token")


class ExecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: Language = "python"
    code: str = Field(min_length=1)
    timeout_s: float | None = Field(None, gt=0, description="default and maximum in settings")
    context: str = Field("default", pattern=CONTEXT_PATTERN, description="python context name")
    background: StrictBool = Field(
        False, description="keep the processes it leaves running (else killed at its end)"
    )


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(
        "", max_length=TITLE_MAX, description="empty = named after the first message"
    )


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, description="the user's message")


class ScheduleAt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: datetime = Field(description="ISO-8601 with its offset, e.g. 2026-12-24T18:00:00+01:00")


class ScheduleCron(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cron: str = Field(max_length=100, description="5 fields: minute hour day month weekday")
    tz: str = Field("UTC", max_length=64, description="an IANA time zone, e.g. Europe/Paris")


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: JobKind = Field(description="exec: code or a file run in the cell; agent: a prompt")
    language: Language | None = Field(None, description="exec jobs; default python")
    code: str = Field("", description="exec: the code to run")
    file: str = Field("", max_length=4096, description="exec: a workspace file to run instead")
    prompt: str = Field("", max_length=100_000, description="agent: what the agent is to do")
    name: str = Field("", max_length=100, description="empty = from the code or prompt")
    timeout_s: float | None = Field(None, gt=0, description="default and maximum in settings")
    output_dir: str = Field(
        "",
        max_length=4096,
        description="a workspace folder; empty = jobs/<id>; zipped as artifacts",
    )
    schedule: ScheduleAt | ScheduleCron | None = Field(
        None, description="none: now; at: once then; cron: at every fire (answers the schedule)"
    )


class SecretPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(
        min_length=1,
        max_length=SECRET_VALUE_MAX,
        pattern=r"^[^\r\n\x00]+$",
        description="the secret, on one line (it goes into headers); the cell only ever holds "
        "a placeholder in its stead",
    )
    hosts: list[HostName] = Field(
        min_length=1,
        max_length=32,
        description="where the value may be sent: host names, or *.domain for every name below",
    )

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(host_pattern(h) for h in v))
