"""API v1's request bodies (DESIGN §7), with the server's limits. What it answers is shared
with the clients: ``agentcell.schemas``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from agentcell.schemas import Language
from agentcell.store.models import TITLE_MAX

CONTEXT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["alice"])


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
