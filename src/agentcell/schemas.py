"""API v1's answers (DESIGN §7): response bodies, the data of SSE events, the error shape.

Shared by the server (``agentcell.api``) and its clients (``agentcell.client``, the CLI): the one
module of the server's a client imports, so it imports nothing of either. Request bodies, with
the server's limits, are ``agentcell.api.schemas``; storage rows live in ``agentcell.store``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Language = Literal["python", "shell"]


class ErrorBody(BaseModel):
    code: str
    message: str
    hint: str = ""


class ErrorResponse(BaseModel):
    """Every error answers with this shape, whatever the status."""

    error: ErrorBody


class UserPublic(BaseModel):
    id: str
    name: str
    key_prefix: str = ""
    created_at: datetime


class UserCreated(UserPublic):
    api_key: str = Field(description="shown once; only its hash is stored")


class Me(BaseModel):
    id: str
    name: str
    admin: bool = False
    created_at: datetime | None = None


class SessionInfo(BaseModel):
    """A web page's sign-in: who, and the token its changes carry in X-CSRF-Token."""

    me: Me
    csrf_token: str
    expires_at: datetime


class NewKey(BaseModel):
    api_key: str = Field(description="shown this once; the one it replaces stops working")


class ExecResponse(BaseModel):
    stdout: str
    stderr: str
    exit_code: int
    duration_ms: float
    truncated: bool
    timed_out: bool
    context_reset: bool = Field(
        False, description="the python context was restarted: its variables are gone"
    )


class ExitEvent(BaseModel):
    """The last SSE event of an exec stream (``event: exit``)."""

    exit_code: int
    duration_ms: float
    truncated: bool
    timed_out: bool
    context_reset: bool = Field(
        False, description="the python context was restarted: its variables are gone"
    )


class CellProcess(BaseModel):
    """A process a background exec kept running in the cell."""

    pid: int
    ppid: int
    command: str
    origin: str = Field(description='"shell", or "python:<context>"')


class CellPort(BaseModel):
    """A TCP port listening in the cell, and where the port relay reaches it."""

    port: int
    address: str = Field(description="what it is bound to: 127.0.0.1, 0.0.0.0, ::1 or ::")
    pid: int | None = Field(description="the program holding it, when the executor may see it")
    command: str
    url: str = Field(description="its path on this server: /v1/cell/ports/{port}/")


class PortTokenRequest(BaseModel):
    port: int = Field(ge=1, le=65535, description="a TCP port of your cell, e.g. 8080")


class PortToken(BaseModel):
    """A short-lived token for one port of the caller's cell, for a browser (which cannot send
    the API key): opening ``url`` trades it for a cookie of that port's."""

    token: str
    port: int
    url: str = Field(
        description="on the server's preview address when it has one (pages from a cell are "
        "kept off the web page's origin), else a path of this server"
    )
    expires_at: datetime


class TerminalSession(BaseModel):
    """A terminal in the caller's cell: ``bash -i`` on a pseudo-terminal, reached over the
    WebSocket ``/v1/cell/terminal?session={id}``; it outlives a closed WebSocket for a grace
    period."""

    id: str
    pid: int = Field(description="the process holding its shell")
    cols: int
    rows: int
    attached: bool = Field(description="a WebSocket is attached to it now")
    exit_code: int | None = Field(description="once its shell has exited")


class CellDesktop(BaseModel):
    """The live desktop of the caller's cell (started if it was not): open ``url`` in a browser
    (the viewer page; view only until you take control), or speak RFB over the WebSocket
    ``websocket``. Both carry a short-lived token instead of the API key."""

    url: str
    websocket: str
    view_only: bool = Field(description="the viewer opens watching; it has a control toggle")
    display: str = Field(description="the X display in the cell, e.g. :99")
    width: int
    height: int
    expires_at: datetime = Field(description="when the token in the URLs stops working")


class CellJupyter(BaseModel):
    """JupyterLab in the caller's cell, through the port relay: ``url`` with your API key, or
    ``browser_url`` in a browser (a short-lived port token in it, traded for a cookie)."""

    url: str
    browser_url: str
    expires_at: datetime = Field(description="when the token in browser_url stops working")


class BrowserToken(BaseModel):
    """A short-lived token for a browser, which cannot send the API key on a WebSocket: add it
    to the WebSocket's URL as ``?token=``."""

    token: str
    url: str
    expires_at: datetime


class Limits(BaseModel):
    memory_mb: int
    cpus: float
    pids: int
    tmp_mb: int
    workspace_mb: int


class CellPublic(BaseModel):
    state: str = Field(description="none, running, paused, stopped, removed or dead")
    image: str
    limits: Limits
    network: str = Field(description="your egress mode: none, allowlist or public")
    created_at: datetime | None
    last_active_at: datetime | None
    memory_bytes: int | None = Field(
        None, description="memory in use now (a running cell), without page cache"
    )
    workspace_bytes: int | None = Field(
        None, description="what your workspace holds, of limits.workspace_mb (where enforced)"
    )


class FileEntry(BaseModel):
    name: str
    path: str
    type: Literal["file", "dir", "link", "other"]
    size: int
    modified_at: datetime


class FileList(BaseModel):
    path: str
    entries: list[FileEntry]
    next_cursor: str | None = Field(
        None, description="more entries follow: pass this as cursor for the next page"
    )


class FileWritten(BaseModel):
    path: str
    size: int


class FilesExtracted(BaseModel):
    """An archive unpacked: into which folder, how many of its entries (files and folders),
    how many bytes its files hold."""

    path: str
    entries: int
    bytes: int


class AuditEventPublic(BaseModel):
    id: int
    user_id: str
    at: datetime
    action: str
    target: str
    detail: str
    exit_code: int | None
    duration_ms: float | None
    ok: bool
    status: str = Field(
        "", description='execs: "running", "done", or "unfinished" (the server stopped first)'
    )
    started_by: str = Field("", description='execs: "api", "mcp" or "agent:<session id>"')


class AuditPage(BaseModel):
    events: list[AuditEventPublic]
    next_before: int | None = Field(None, description="pass as ?before= for the next page")


class AdminCell(BaseModel):
    owner: str
    cell_id: str
    container_id: str
    state: str
    active: int
    created_at: datetime
    last_active_at: datetime
    memory_bytes: int | None = Field(
        None, description="in use without page cache, as docker stats counts it (running cells)"
    )


class AdminCellState(BaseModel):
    owner: str
    state: str = Field(description="after the action: paused, stopped or removed")


class ReapResult(BaseModel):
    paused: int
    stopped: int
    removed: int
    died: int


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    docker: bool
    database: bool
    version: str
    workspace_quota: bool = Field(
        True,
        description="workspaces are size-capped loop mounts; false when the server is not root "
        "or has no mkfs.ext4, so one user can fill the host's disk",
    )


# --- chat sessions -----------------------------------------------------------------------------


class SessionPublic(BaseModel):
    id: str
    title: str
    created_at: datetime
    updated_at: datetime


class MessagePublic(BaseModel):
    id: int
    role: Literal["user", "assistant"]
    content: str = Field(description="the user's prompt, or the assistant's final answer")
    events: list[dict[str, Any]] = Field(
        description="what the turn showed as it ran: {event, ...} as in the SSE stream "
        "(text pieces joined), without done; empty for the user's messages"
    )
    created_at: datetime


class ChatUsage(BaseModel):
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0


class ChatReply(BaseModel):
    """A finished turn (the JSON answer, without ``Accept: text/event-stream``)."""

    content: str
    events: list[dict[str, Any]]
    usage: ChatUsage


# The data of each SSE event of a chat stream, by event name. ``error`` carries ErrorBody.


class ChatText(BaseModel):
    """``event: text``: a piece of an agent's answer, as the model writes it."""

    agent: str
    text: str


class ChatToolCall(BaseModel):
    """``event: tool_call``."""

    agent: str
    tool: str
    call_id: str
    args: dict[str, Any]


class ChatToolResult(BaseModel):
    """``event: tool_result`` (``content`` trimmed for display)."""

    agent: str
    tool: str
    call_id: str
    content: str
    ok: bool = True


class ChatAgent(BaseModel):
    """``event: agent``: the coordinator handed a task to a sub-agent, or got its answer."""

    agent: str
    action: Literal["start", "end"]
    task: str = ""
    ok: bool = True  # on "end": False when the sub-agent failed or was stopped


class ChatDone(BaseModel):
    """``event: done``, the last event of a turn that finished (kept by then)."""

    output: str
    usage: ChatUsage


# --- jobs and schedules (DESIGN §9) --------------------------------------------------------

JobKind = Literal["exec", "agent"]
JobState = Literal[
    "queued", "running", "succeeded", "failed", "cancelled", "timed_out", "interrupted"
]
ENDED_STATES: tuple[JobState, ...] = (
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
    "interrupted",
)


class JobStateChange(BaseModel):
    at: datetime
    state: JobState
    reason: str = ""


class JobPublic(BaseModel):
    """A job: work handed off. ``reason`` says why it is in its state (why it failed, who
    cancelled it); ``events`` (in ``GET /v1/jobs/{id}`` only) every state change."""

    object: Literal["job"] = "job"
    id: str
    name: str
    kind: JobKind
    state: JobState
    reason: str = ""
    language: Language | None = None  # exec jobs
    code: str = ""  # exec jobs: the code run ("" when a file is run)
    file: str = ""  # exec jobs: the workspace file run
    prompt: str = ""  # agent jobs
    output_dir: str  # relative to the workspace; its ZIP is the job's artifacts
    timeout_s: float
    exit_code: int | None = None
    attempt: int = 1
    retry_of: str | None = None
    schedule_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    log_bytes: int = 0
    events: list[JobStateChange] = Field(default_factory=list)


class JobList(BaseModel):
    jobs: list[JobPublic]


class JobTemplate(BaseModel):
    """What a schedule starts at each fire."""

    kind: JobKind
    name: str
    language: Language | None = None
    code: str = ""
    file: str = ""
    prompt: str = ""
    output_dir: str = ""  # "" = each job's own jobs/<id>/
    timeout_s: float


class SchedulePublic(BaseModel):
    """A schedule: ``at`` fires once, ``cron`` at every match (5 fields, in ``tz``). A fire
    while the schedule's last job is still queued or running is skipped (``skips``,
    ``last_skip_reason``)."""

    object: Literal["schedule"] = "schedule"
    id: str
    name: str
    kind: Literal["at", "cron"]
    cron: str = ""
    tz: str = "UTC"
    at: datetime | None = None
    paused: bool = False
    next_run_at: datetime | None = None  # None: it will not fire again
    last_fired_at: datetime | None = None
    last_job_id: str | None = None
    fires: int = 0
    skips: int = 0
    last_skip_reason: str = ""
    job: JobTemplate
    created_at: datetime


class ScheduleList(BaseModel):
    schedules: list[SchedulePublic]


class JobLogChunk(BaseModel):
    """SSE ``log`` event of ``GET /v1/jobs/{id}/logs``; its ``id:`` is ``offset``, the byte
    offset after this text, to resume from with ``Last-Event-ID`` or ``?offset=``."""

    text: str
    offset: int


class JobLogEnd(BaseModel):
    """SSE ``end`` event: the job has ended and the whole log has been sent."""

    state: JobState
    exit_code: int | None = None
    offset: int


# --- network: egress policy and secrets (DESIGN §10) -------------------------------------------

NetworkMode = Literal["none", "allowlist", "public"]
"""What a cell may reach through the egress proxy: nothing; the hosts of ``allow`` (minus those
of ``deny``); any public address (minus ``deny``). Private, loopback and link-local addresses
are refused whatever the mode."""
NETWORK_MODES: tuple[NetworkMode, ...] = ("none", "allowlist", "public")
HOST_PATTERNS_MAX = 256
HOST_PATTERN = re.compile(
    r"^(\*\.)?(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


def host_pattern(text: str) -> str:
    """A host name as policies and secrets hold it: lower case, IDNA (punycode), no trailing
    dot; ``*.`` in front matches every name below (not the bare domain). An IP address is kept
    as it is. ValueError says what is wrong."""
    raw = text.strip()
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        pass
    name = raw.lower().rstrip(".")
    wildcard = name.startswith("*.")
    body = name[2:] if wildcard else name
    try:
        body = body.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{text!r} is not a host name") from None
    pattern = f"*.{body}" if wildcard else body
    if not HOST_PATTERN.match(pattern) or "*" in body:
        raise ValueError(
            f"{text!r} is not a host name or *.domain (no scheme, port, path or inner *)"
        )
    return pattern


# What the API's schema says a host is (so that a client, and a fuzzer, know): a name or *.name
# of ASCII labels; host_pattern then normalises it (IP literals are names of this shape too).
HOST_SCHEMA_PATTERN = (
    r"^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)
HostName = Annotated[str, StringConstraints(pattern=HOST_SCHEMA_PATTERN, max_length=253)]


def _host_patterns(values: list[str]) -> list[str]:
    if len(values) > HOST_PATTERNS_MAX:
        raise ValueError(f"at most {HOST_PATTERNS_MAX} hosts")
    return list(dict.fromkeys(host_pattern(v) for v in values))


class NetworkPolicy(BaseModel):
    """A user's egress policy (``GET/PUT /v1/cell/network``)."""

    model_config = ConfigDict(extra="forbid")
    mode: NetworkMode = "none"
    allow: list[HostName] = Field(
        default_factory=list,
        max_length=HOST_PATTERNS_MAX,
        description="allowlist mode: hosts, or *.domain for every name below",
    )
    deny: list[HostName] = Field(
        default_factory=list,
        max_length=HOST_PATTERNS_MAX,
        description="refused in every mode; deny wins over allow",
    )

    @field_validator("allow", "deny")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return _host_patterns(v)


class AdminNetwork(BaseModel):
    """The deployment's egress rules (``GET/PUT /v1/admin/network``): the policy of users who
    set none, the widest mode a user may choose, the ports besides 80 and 443 cells may reach."""

    model_config = ConfigDict(extra="forbid")
    default: NetworkPolicy = Field(default_factory=NetworkPolicy)
    ceiling: NetworkMode = "allowlist"
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list, max_length=100, description="destination ports besides 80 and 443"
    )

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        return sorted(set(v))


SECRET_NAME = r"^[A-Z_][A-Z0-9_]{0,63}$"
SECRET_VALUE_MAX = 16 * 1024


class SecretPublic(BaseModel):
    """A secret as its owner sees it: never its value."""

    name: str
    hosts: list[str]
    created_at: datetime
    updated_at: datetime


class SecretList(BaseModel):
    secrets: list[SecretPublic]


class CellNetwork(NetworkPolicy):
    """Your egress policy as it applies now, and where it comes from."""

    source: Literal["user", "default"] = Field(
        description="user: you set it; default: the admin's (PUT one of your own to change it)"
    )
    ceiling: NetworkMode = Field(description="the widest mode the admin lets you choose")
    ports: list[int] = Field(description="the ports cells may reach")
