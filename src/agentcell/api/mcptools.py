"""The tools of ``/mcp`` (``api.mcp``): each works in the caller's own cell, whom ``McpDoor``
put in the request's scope (never a tool argument), through the services the routes call."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from agentcell.api.publish import file_list, job_public
from agentcell.api.schemas import CONTEXT_PATTERN
from agentcell.errors import AgentcellError, FileTooLarge
from agentcell.sandbox.audit import started_by
from agentcell.schemas import (
    ExecResponse,
    FileList,
    FileWritten,
    JobKind,
    JobList,
    JobLogChunk,
    JobLogEnd,
    JobPublic,
    JobState,
    Language,
)
from agentcell.services import Services
from agentcell.services.cells import CellStream
from agentcell.services.exec import ExecCall
from agentcell.services.joblogs import LogEvent
from agentcell.services.jobs import JobSpec
from agentcell.store.models import Job, User

CALLER = "mcp_caller"  # in the scope's state: who McpDoor let in
READ_MAX = 1024 * 1024  # bytes of one read_file answer
FOLLOW_MAX = 256 * 1024  # characters of log in one job_follow answer
WAIT_MAX_S = 60.0  # the longest one job_follow call waits

P = ParamSpec("P")
T = TypeVar("T")
Ctx = Context[Any, Any]
WorkspacePath = Annotated[str, Field(max_length=4096, description="relative to the workspace")]


@dataclass(frozen=True)
class Caller:
    user: User
    services: Services


class JobLog(BaseModel):
    """What one ``job_follow`` call read of a job's log."""

    job_id: str
    state: JobState
    exit_code: int | None = None
    text: str
    offset: int = Field(description="the byte after text: pass it back as offset for more")
    ended: bool = Field(description="the job has ended and text reaches the log's end")


# --- who calls, what fails ------------------------------------------------------------------------


def caller_of(ctx: Ctx) -> Caller:
    scope = getattr(ctx.request_context.request, "scope", {})
    caller = scope.get("state", {}).get(CALLER)
    if not isinstance(caller, Caller):  # only McpDoor serves this server
        raise ToolError("no authenticated caller")
    return caller


def answers(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """The tool, its errors (ours) turned into tool errors that say what to do next."""

    @functools.wraps(fn)
    async def tool(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except AgentcellError as exc:
            hint = f" Hint: {exc.hint}" if exc.hint else ""
            raise ToolError(f"{exc.message} ({exc.code}).{hint}") from exc

    return tool


@contextlib.contextmanager
def _started_by_mcp() -> Iterator[None]:
    token = started_by.set("mcp")
    try:
        yield
    finally:
        started_by.reset(token)


# --- the tools: exec and files --------------------------------------------------------------------


async def exec_code(
    ctx: Ctx,
    code: Annotated[str, Field(min_length=1)],
    language: Language = "python",
    timeout_s: Annotated[float | None, Field(gt=0)] = None,
    context: Annotated[str, Field(pattern=CONTEXT_PATTERN)] = "default",
) -> ExecResponse:
    """Run Python or shell code in your cell (in /workspace). Python runs in a persistent
    context: its variables and imports are there for the next call in the same context."""
    caller = caller_of(ctx)
    with _started_by_mcp():
        call = ExecCall(code, language=language, context=context, timeout_s=timeout_s)
        result = await caller.services.execs.run(caller.user.id, call)
    return ExecResponse.model_validate(result, from_attributes=True)


async def list_files(ctx: Ctx, path: WorkspacePath = ".", cursor: str = "") -> FileList:
    """A folder's entries by name; while next_cursor is set, pass it as cursor for more."""
    caller = caller_of(ctx)
    path, page = await caller.services.files.page(caller.user.id, path, 0, cursor)
    return file_list(path, page)


async def read_file(ctx: Ctx, path: WorkspacePath) -> str:
    """A text file's content (UTF-8, at most 1 MiB)."""
    caller = caller_of(ctx)
    found = await caller.services.files.download(caller.user.id, path)
    data = await _head(found.chunks, READ_MAX, found.path)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ToolError(
            f"{found.path} is not UTF-8 text. Hint: look into it with exec (file, xxd | head), "
            "or download it: GET /v1/files/raw"
        ) from None


async def _head(chunks: CellStream[bytes], limit: int, path: str) -> bytes:
    data = bytearray()
    try:
        async for chunk in chunks.items:
            data += chunk
            if len(data) > limit:
                raise FileTooLarge(
                    f"{path} is larger than the {limit} bytes read_file answers",
                    hint="read a part with exec (head -c, sed -n), or download it: "
                    "GET /v1/files/raw",
                )
    finally:
        await chunks.close()
    return bytes(data)


async def write_file(ctx: Ctx, path: WorkspacePath, content: str) -> FileWritten:
    """Write text to a file (replaced atomically; missing folders are made). A request holds
    about 1 MiB (AGENTCELL_MAX_CODE_BYTES): upload larger files with PUT /v1/files/raw."""
    caller = caller_of(ctx)
    data = content.encode()

    async def body() -> AsyncIterator[bytes]:
        yield data

    path, size = await caller.services.files.upload(caller.user.id, path, body(), len(data))
    return FileWritten(path=path, size=size)


async def delete_file(ctx: Ctx, path: WorkspacePath, recursive: bool = False) -> str:
    """Delete a file, or a folder: an empty one, or with recursive=true all that is in it."""
    caller = caller_of(ctx)
    await caller.services.files.delete(caller.user.id, path, recursive=recursive)
    return f"deleted {path}"


# --- the tools: jobs ------------------------------------------------------------------------------


async def job_start(
    ctx: Ctx,
    kind: JobKind = "exec",
    code: str = "",
    language: Language = "python",
    file: WorkspacePath = "",
    prompt: Annotated[str, Field(max_length=100_000)] = "",
    name: Annotated[str, Field(max_length=100)] = "",
    timeout_s: Annotated[float | None, Field(gt=0)] = None,
    output_dir: WorkspacePath = "",
) -> JobPublic:
    """Start a background job: kind exec runs code, or a workspace file, in your cell; kind
    agent gives the agent a prompt. Its output folder (default jobs/<id>) is in the workspace.
    Follow its log with job_follow."""
    caller = caller_of(ctx)
    spec = JobSpec(
        kind=kind,
        language=language if kind == "exec" else None,
        code=code,
        file=file,
        prompt=prompt,
        name=name,
        timeout_s=timeout_s,
        output_dir=output_dir,
    )
    job = await caller.services.jobs.submit(caller.user.id, spec)
    assert isinstance(job, Job)  # without a schedule, a job is made
    return job_public(job)


async def job_list(
    ctx: Ctx, state: JobState | None = None, limit: Annotated[int, Field(ge=1, le=1000)] = 20
) -> JobList:
    """Your jobs, newest first."""
    caller = caller_of(ctx)
    jobs = await caller.services.jobs.list_jobs(caller.user.id, state, limit)
    return JobList(jobs=[job_public(j) for j in jobs])


async def job_status(ctx: Ctx, job_id: str) -> JobPublic:
    """The job: its state and why, its exit code, every change of its state."""
    caller = caller_of(ctx)
    job, events = await caller.services.jobs.get(caller.user.id, job_id)
    return job_public(job, events)


async def job_follow(
    ctx: Ctx,
    job_id: str,
    offset: Annotated[int, Field(ge=0)] = 0,
    wait_s: Annotated[float, Field(gt=0, le=WAIT_MAX_S)] = 10.0,
) -> JobLog:
    """The job's log from byte offset, as it grows. Answers when the job ends, after wait_s
    seconds, or after 256 KiB of text: call again with the offset answered until ended."""
    caller = caller_of(ctx)
    owner = caller.user.id
    chunks, end = await _gather(await caller.services.joblogs.follow(owner, job_id, offset), wait_s)
    text = "".join(chunk.text for chunk in chunks)
    if end is not None:
        return JobLog(
            job_id=job_id,
            state=end.state,
            exit_code=end.exit_code,
            text=text,
            offset=end.offset,
            ended=True,
        )
    job, _ = await caller.services.jobs.get(owner, job_id)
    after = chunks[-1].offset if chunks else offset
    return JobLog(
        job_id=job_id,
        state=job.state,
        exit_code=job.exit_code,
        text=text,
        offset=after,
        ended=False,
    )


async def _gather(
    events: AsyncGenerator[LogEvent, None], wait_s: float
) -> tuple[list[JobLogChunk], JobLogEnd | None]:
    """What a follower gets within wait_s (at most FOLLOW_MAX of text), and the end if it came."""
    chunks: list[JobLogChunk] = []
    size = 0
    async with contextlib.aclosing(events):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                async for event in events:
                    if isinstance(event, JobLogEnd):
                        return chunks, event
                    if isinstance(event, JobLogChunk):
                        chunks.append(event)
                        size += len(event.text)
                        if size >= FOLLOW_MAX:
                            break
    return chunks, None


async def job_cancel(ctx: Ctx, job_id: str) -> JobPublic:
    """Cancel a queued or running job: when this answers, its processes are gone."""
    caller = caller_of(ctx)
    return job_public(await caller.services.jobs.cancel(caller.user.id, job_id))


# --- the table ------------------------------------------------------------------------------------

READING = ToolAnnotations(read_only_hint=True)
TOOLS: tuple[tuple[str, Callable[..., Awaitable[Any]], ToolAnnotations | None], ...] = (
    ("exec", exec_code, None),
    ("list_files", list_files, READING),
    ("read_file", read_file, READING),
    ("write_file", write_file, ToolAnnotations(destructive_hint=True, idempotent_hint=True)),
    ("delete_file", delete_file, ToolAnnotations(destructive_hint=True, idempotent_hint=True)),
    ("job_start", job_start, ToolAnnotations(destructive_hint=False)),
    ("job_list", job_list, READING),
    ("job_status", job_status, READING),
    ("job_follow", job_follow, READING),
    ("job_cancel", job_cancel, ToolAnnotations(destructive_hint=True)),
)
