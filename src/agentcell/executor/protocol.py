"""The executor's wire protocol, shared by the server in the cell and the client on the host.

Standard library only. One request per connection: the client sends one request line (and, for
``write``, its data frames), the server answers with event lines and closes. Every message is
one JSON object on one line with a ``kind`` discriminator.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

VERSION = 1
SOCKET_NAME = "exec.sock"
CONTROL_DIR = "/run/agentcell"  # inside the cell
WORKSPACE = "/workspace"  # inside the cell
CHUNK_BYTES = 256 * 1024  # raw bytes per file data frame (sent base64-encoded)
LIST_PAGE = 1000  # entries in a listing page, unless asked for fewer
LIST_PAGE_MAX = 10_000
LIST_PAGE_BYTES = 1024 * 1024  # a page ends early rather than grow past this (long names)
# The longest line each side reads. Every frame, page and event fits well inside; the host, which
# reads an untrusted cell, allows less. An exec's code must fit in a request line.
REQUEST_LINE_LIMIT = 8 * 1024 * 1024  # host -> cell: what the server reads
EVENT_LINE_LIMIT = 4 * 1024 * 1024  # cell -> host: what the client reads

Language = Literal["python", "shell"]
Stream = Literal["stdout", "stderr"]
EntryType = Literal["file", "dir", "link", "other"]


@dataclass
class Message:
    kind: ClassVar[str]
    nested: ClassVar[bool] = False  # holds dataclasses (Entries, Processes)

    def encode(self) -> bytes:
        """The message as its line. A flat one is read with vars(), without dataclasses.asdict's
        deep copies: a warm exec is made of such fixed costs."""
        body = dataclasses.asdict(self) if self.nested else dict(vars(self))
        body["kind"] = self.kind
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"


# --- requests (host -> cell) -------------------------------------------------------------


@dataclass
class Ping(Message):
    kind: ClassVar[str] = "ping"


@dataclass
class Exec(Message):
    """Run code. python runs in a named, stateful context; shell runs a fresh ``bash -c``."""

    kind: ClassVar[str] = "exec"
    code: str
    language: Language = "python"
    context: str = "default"
    timeout_s: float = 60.0
    output_limit: int = 16 * 1024 * 1024
    cwd: str = WORKSPACE
    env: dict[str, str] = field(default_factory=dict)
    background: bool = False  # keep the processes it leaves running (else killed at its end)


@dataclass
class Interrupt(Message):
    """Interrupt whatever runs in a python context (SIGINT to its process group)."""

    kind: ClassVar[str] = "interrupt"
    context: str = "default"


@dataclass
class CloseContext(Message):
    kind: ClassVar[str] = "close_context"
    context: str = "default"


@dataclass
class ListProcesses(Message):
    """The processes background execs kept running; answered by ``Processes``."""

    kind: ClassVar[str] = "list_processes"


@dataclass
class KillProcess(Message):
    """Kill a kept process and everything under it; answered by ``Ok``."""

    kind: ClassVar[str] = "kill_process"
    pid: int


@dataclass
class ListDir(Message):
    """One page of a folder's entries, by name; ``cursor`` is a page's ``next_cursor``."""

    kind: ClassVar[str] = "list"
    path: str = "."
    limit: int = 0  # 0 = LIST_PAGE
    cursor: str = ""


@dataclass
class Read(Message):
    kind: ClassVar[str] = "read"
    path: str
    max_bytes: int = 0  # a larger file is refused before any data is sent; 0 = no limit


@dataclass
class Zip(Message):
    """A ZIP of a workspace folder, answered like ``Read``: Chunk frames, then End.
    Links and special files are left out."""

    kind: ClassVar[str] = "zip"
    path: str = "."
    max_bytes: int = 0  # the files' total size; a larger folder is refused up front; 0 = none


@dataclass
class Write(Message):
    """Followed by ``Chunk`` frames and one ``End``; the file is replaced atomically."""

    kind: ClassVar[str] = "write"
    path: str
    make_parents: bool = True


@dataclass
class Delete(Message):
    kind: ClassVar[str] = "delete"
    path: str
    recursive: bool = False


# --- data frames (both directions) ---------------------------------------------------------


@dataclass
class Chunk(Message):
    kind: ClassVar[str] = "chunk"
    data: str  # base64


@dataclass
class End(Message):
    kind: ClassVar[str] = "end"
    size: int = 0


# --- events (cell -> host) ------------------------------------------------------------------


@dataclass
class Pong(Message):
    kind: ClassVar[str] = "pong"
    version: int = VERSION
    uid: int = -1
    pid: int = -1


@dataclass
class Output(Message):
    kind: ClassVar[str] = "output"
    stream: Stream
    data: str


@dataclass
class Exit(Message):
    """The end of an exec. ``exit_code`` is negative -N when killed by signal N."""

    kind: ClassVar[str] = "exit"
    exit_code: int
    duration_ms: float
    truncated: bool = False
    timed_out: bool = False
    oom_killed: bool = False
    context_reset: bool = False  # the python context died or was killed: its state is gone


@dataclass
class Entry:
    name: str
    path: str  # relative to the workspace
    type: EntryType
    size: int
    modified_at: float  # unix time


@dataclass
class Entries(Message):
    kind: ClassVar[str] = "entries"
    nested: ClassVar[bool] = True
    entries: list[Entry]
    next_cursor: str = ""  # "" = the last page


@dataclass
class Process:
    pid: int
    ppid: int
    command: str
    origin: str  # "shell", or "python:<context>"


@dataclass
class Processes(Message):
    kind: ClassVar[str] = "processes"
    nested: ClassVar[bool] = True
    processes: list[Process]


@dataclass
class Ok(Message):
    kind: ClassVar[str] = "ok"


@dataclass
class Error(Message):
    """``code`` is one of agentcell.errors.EXECUTOR_CODES."""

    kind: ClassVar[str] = "error"
    code: str
    message: str


MESSAGES: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        Ping,
        Exec,
        Interrupt,
        CloseContext,
        ListProcesses,
        KillProcess,
        ListDir,
        Read,
        Zip,
        Write,
        Delete,
        Chunk,
        End,
        Pong,
        Output,
        Exit,
        Entries,
        Processes,
        Ok,
        Error,
    )
}


class ProtocolError(ValueError):
    pass


def decode(line: bytes | str) -> Message:
    try:
        body: Any = json.loads(line)
        cls = MESSAGES[body.pop("kind")]
        if cls is Entries:
            body["entries"] = [Entry(**e) for e in body["entries"]]
        if cls is Processes:
            body["processes"] = [Process(**e) for e in body["processes"]]
        return cls(**body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"bad message: {str(line)[:200]!r}: {exc}") from exc
