"""What the agents work with (``AgentDeps``) and the coder's tools. Every tool acts through the
user's cell (the executor inside it), never on the host's file system, and nothing it runs gets
an environment of ours: ``env`` is always empty, so the model key stays in this process.

Mistakes the model can fix (a traceback, a missing file, an edit that does not match) come back
as ``ModelRetry`` with the details; a dead cell (``CellDied``) ends the turn as such.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from pydantic_ai import ModelRetry, RunContext
from pydantic_ai.models import Model
from pydantic_ai.usage import UsageLimits

from agentcell.agent.events import AgentEvent, AgentName
from agentcell.config import Settings
from agentcell.errors import (
    FileTooLarge,
    InvalidPath,
    InvalidRequest,
    PathNotFound,
    UnsupportedFileType,
    WorkspaceFull,
)
from agentcell.executor.client import ExecResult
from agentcell.sandbox.service import CellHandle

EventSink = Callable[[AgentEvent], None]


class Servers(Protocol):
    """Long-running servers of the user's, run as their jobs (the jobs service's, bound to the
    turn's owner): ``start`` gives the job's id; ``ended`` its state once it is no longer
    queued or running, else None."""

    async def start(self, command: str, name: str) -> str: ...
    async def ended(self, job_id: str) -> str | None: ...


OUTPUT_BYTES = 1024 * 1024  # asked of the cell per exec; the model gets a trimmed part of it
READ_BYTES = 8 * 1024 * 1024
MAX_ENTRIES = 500
SERVER_START_S = 30.0  # a server that does not listen by then is reported to the model
FIXABLE = (
    PathNotFound,
    InvalidPath,
    InvalidRequest,
    FileTooLarge,
    UnsupportedFileType,
    WorkspaceFull,
)


@dataclass
class AgentDeps:
    """One turn's world: the user's cell, settings, the chat session, and where events go."""

    cell: CellHandle
    settings: Settings
    session_id: str
    emit: EventSink  # ToolCall / ToolResult / AgentStep / Text events, in order
    model: Model
    limits: UsageLimits
    agent: AgentName = "coordinator"
    memory: str = ""  # the coordinator's notes for this turn, as its instructions show them
    servers: Servers | None = None  # where the coder starts servers (chat turns have it)
    python_context: str = field(init=False)  # the session's own stateful python
    browser_context: str = field(init=False)  # where the session's browser lives

    def __post_init__(self) -> None:
        self.python_context = f"s-{self.session_id}"
        self.browser_context = f"b-{self.session_id}"

    @property
    def output_chars(self) -> int:
        return self.settings.agent_tool_output_chars


def trim(text: str, limit: int, how_to_see_more: str = "") -> str:
    """The text, or its head and tail with a note of what was cut, if it is longer than limit."""
    if len(text) <= limit:
        return text
    head = limit * 3 // 4
    tail = limit - head
    more = f"; {how_to_see_more}" if how_to_see_more else ""
    note = (
        f"\n[... cut: the result is {len(text)} characters, shown are the first {head} "
        f"and the last {tail}{more} ...]\n"
    )
    return text[:head] + note + text[-tail:]


def describe(result: ExecResult, limit: int) -> str:
    """An exec's result as the model reads it: output, then what else happened."""
    parts = []
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("[stderr]\n" + result.stderr.rstrip("\n"))
    text = trim("\n".join(parts), limit, "write long output to a file and read parts of it")
    notes = []
    if result.truncated:
        notes.append(f"[the cell kept only the first {OUTPUT_BYTES} bytes of output]")
    if result.timed_out:
        notes.append(f"[timed out after {result.duration_ms / 1000:.1f} s and was stopped]")
    if result.context_reset:
        notes.append("[the python context was restarted: variables from earlier calls are gone]")
    if result.exit_code and not result.timed_out:
        notes.append(f"[exit code {result.exit_code}]")
    return "\n".join([text, *notes]).strip() or "(no output)"


@contextmanager
def fixable() -> Iterator[None]:
    """Errors about paths and requests go back to the model to fix."""
    try:
        yield
    except FIXABLE as exc:
        raise ModelRetry(str(exc)) from exc


# --- the coder's tools ----------------------------------------------------------------------


async def run_python(ctx: RunContext[AgentDeps], code: str, timeout_s: float | None = None) -> str:
    """Run Python 3 code in this chat session's own Python process, like a notebook cell:
    variables, imports and functions persist between calls. The working directory is
    /workspace. Print what you want to see.

    Args:
        code: the Python source to run.
        timeout_s: stop it after this many seconds (default: the server's, usually 60).
    """
    deps = ctx.deps
    with fixable():
        result = await deps.cell.exec(
            code,
            "python",
            context=deps.python_context,
            timeout_s=timeout_s,
            output_limit=OUTPUT_BYTES,
            env={},
        )
    text = describe(result, deps.output_chars)
    if result.exit_code and not result.timed_out:
        raise ModelRetry(f"the code raised an error:\n{text}")
    return text


async def run_shell(
    ctx: RunContext[AgentDeps],
    command: str,
    timeout_s: float | None = None,
    background: bool = False,
) -> str:
    """Run a bash command in /workspace (a fresh shell each time; cd does not persist).
    The exit code is reported when it is not 0. Processes the command leaves running (`cmd &`)
    are killed when it ends, unless background is true.

    Args:
        command: the bash command line or script.
        timeout_s: stop it after this many seconds (default: the server's, usually 60).
        background: keep what the command leaves running, e.g. a web server started with `&`.
    """
    deps = ctx.deps
    with fixable():
        result = await deps.cell.exec(
            command,
            "shell",
            timeout_s=timeout_s,
            output_limit=OUTPUT_BYTES,
            env={},
            background=background,
        )
    return describe(result, deps.output_chars)


async def read_file(ctx: RunContext[AgentDeps], path: str) -> str:
    """Read a text file of the workspace.

    Args:
        path: the file's path, relative to /workspace.
    """
    with fixable():
        data = await ctx.deps.cell.files.read_bytes(path, READ_BYTES)
    if b"\0" in data[:8192]:
        return f"{path} is a binary file of {len(data)} bytes"
    text = data.decode("utf-8", errors="replace")
    return trim(text, ctx.deps.output_chars, "use run_shell with sed -n 'A,Bp' to read parts")


async def write_file(ctx: RunContext[AgentDeps], path: str, content: str) -> str:
    """Create or replace a file of the workspace (parent folders are made).

    Args:
        path: the file's path, relative to /workspace.
        content: the whole new content of the file.
    """
    with fixable():
        size = await ctx.deps.cell.files.write(path, content.encode())
    return f"wrote {size} bytes to {path}"


async def edit_file(ctx: RunContext[AgentDeps], path: str, old: str, new: str) -> str:
    """Replace one exact piece of a workspace file with new text. ``old`` must occur exactly
    once in the file, whitespace included.

    Args:
        path: the file's path, relative to /workspace.
        old: the exact text to replace; include enough lines around it to make it unique.
        new: the text to put in its place.
    """
    files = ctx.deps.cell.files
    with fixable():
        data = await files.read_bytes(path, READ_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelRetry(f"{path} is not UTF-8 text; use write_file or run_python") from exc
    count = text.count(old) if old else 0
    if count != 1:
        found = "does not occur" if count == 0 else f"occurs {count} times"
        raise ModelRetry(
            f"the text to replace {found} in {path}; it must occur exactly once. Read the file "
            "and copy the exact text (whitespace included), with enough context to be unique"
        )
    with fixable():
        await files.write(path, text.replace(old, new, 1).encode())
    return f"edited {path}: replaced {len(old)} characters with {len(new)}"


async def list_files(ctx: RunContext[AgentDeps], path: str = ".") -> str:
    """List a folder of the workspace: type, size in bytes, path.

    Args:
        path: the folder, relative to /workspace; "." is the workspace itself.
    """
    with fixable():
        entries = await ctx.deps.cell.files.list(path)
    if not entries:
        return f"{path} is empty"
    lines = [
        f"{e.type:<5} {e.size:>10}  {e.path}{'/' if e.type == 'dir' else ''}"
        for e in sorted(entries, key=lambda e: e.path)[:MAX_ENTRIES]
    ]
    if len(entries) > MAX_ENTRIES:
        lines.append(f"[... and {len(entries) - MAX_ENTRIES} more entries]")
    return "\n".join(lines)


async def serve(ctx: RunContext[AgentDeps], command: str, port: int, path: str = "") -> str:
    """Start a long-running server (a web app you wrote, a static site) as a background job of
    the user's, wait until it listens, and get the link where the user sees it. Use this, not
    run_shell, for anything the user should open in a browser.

    Args:
        command: the bash command that runs the server in the foreground (no `&`), from
            /workspace, e.g. `cd site && python3 -m http.server 8080`.
        port: the TCP port it listens on (on 127.0.0.1 or 0.0.0.0), 1024 to 65535.
        path: the page to link to, e.g. "index.html".
    """
    deps = ctx.deps
    if deps.servers is None:
        return "servers cannot be started from here (a background job): use run_shell"
    if not 1024 <= port <= 65535:
        raise ModelRetry("give a port from 1024 to 65535, e.g. 8080")
    job_id = await deps.servers.start(command, f"server on port {port}")
    deadline = time.monotonic() + SERVER_START_S
    while port not in [p.port for p in await deps.cell.ports()]:
        if (state := await deps.servers.ended(job_id)) is not None:
            raise ModelRetry(
                f"the server's job {job_id} ended ({state}) before port {port} listened; "
                f"its output: run_shell `tail -20 .agentcell/jobs/{job_id}/log`"
            )
        if time.monotonic() > deadline:
            raise ModelRetry(
                f"nothing listens on port {port} after {SERVER_START_S:g} s (the job {job_id} "
                f"still runs: see `tail .agentcell/jobs/{job_id}/log`; is the port right?)"
            )
        await asyncio.sleep(0.2)
    url = f"/v1/cell/ports/{port}/{path.lstrip('/')}"
    return (
        f"The server runs as job {job_id} and listens on port {port}. Give the user its link: "
        f"{url} on the agentcell server (in a terminal: agentcell ports url {port} {path} "
        f"--browser). They stop it with: agentcell jobs cancel {job_id}."
    )


CODER_TOOLS = (run_python, run_shell, read_file, write_file, edit_file, list_files, serve)
