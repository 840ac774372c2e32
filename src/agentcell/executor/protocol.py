"""The executor's wire protocol, shared by the server in the cell and the client on the host.

Standard library only. One request per connection: the client sends one request line (and, for
``write`` and ``extract``, its data frames), the server answers with event lines and closes.
Every message is one JSON object on one line with a ``kind`` discriminator. After the ``Ok``
of ``EgressAccept`` (an egress connection of the cell's), ``Connect`` (the host's, to a port in
the cell) and the ``TerminalInfo`` of ``TerminalAttach`` the connection carries raw bytes both
ways.
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
USER_BASE = f"{WORKSPACE}/.local"  # PYTHONUSERBASE: ``pip install --user`` lands in the workspace
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's, with the egress CA when mounted
CHUNK_BYTES = 256 * 1024  # raw bytes per file data frame (sent base64-encoded)
LIST_PAGE = 1000  # entries in a listing page, unless asked for fewer
LIST_PAGE_MAX = 10_000
LIST_PAGE_BYTES = 1024 * 1024  # a page ends early rather than grow past this (long names)
EXTRACT_ENTRIES = 10_000  # an archive's entries, files and folders (Extract's defaults)
EXTRACT_BYTES = 1024**3  # what an archive's files add up to, unpacked
EXTRACT_RATIO = 200  # how many times its packed size an entry may unpack to
JOBS_DIR = ".agentcell/jobs"  # relative to the workspace: a folder per job, named by its id
JOB_ID_CHARS = "A-Za-z0-9_-"  # a job id is 1 to JOB_ID_MAX of them
JOB_ID_MAX = 64
JOB_LOG_LIMIT = 64 * 1024 * 1024
TIMED_OUT = 124  # the exit code of a timed-out exec or job, as timeout(1) has it
BEAT_S = 10.0  # a job's waiters and followers hear at least this often, while nothing happens
EGRESS_PORT = 3128  # the egress forwarder's port on the cell's 127.0.0.1 (egress.py)
EGRESS_OFFER_TTL_S = 3.0  # an offered connection the host has not taken by then is dropped
EGRESS_PENDING_MAX = 64  # offers waiting for the host; more connections wait in the backlog
EGRESS_RELAYS_MAX = 256  # connections relayed at once; more wait in the backlog
PORT_RELAYS_MAX = 256  # host connections to the cell's ports at once (ports.py)
TERMINALS_MAX = 16  # terminals open at once in a cell (terminals.py)
TERMINAL_GRACE_S = 60.0  # a terminal nobody is attached to lives this long (a page reload)
TERMINAL_SCROLLBACK = 64 * 1024  # bytes of recent output a new attachment is given first
TERMINAL_ID_MAX = 64
DESKTOP_DISPLAY = 99  # the live desktop's X display, :99 (desktop.py)
DESKTOP_VNC_PORT = 5900  # its VNC server, on the cell's 127.0.0.1
DESKTOP_SIZE = (1280, 800)
DESKTOP_START_S = 20.0  # Xvfb and x11vnc are up by then, or the start failed
# The longest line each side reads. Every frame, page and event fits well inside; the host, which
# reads an untrusted cell, allows less. An exec's code must fit in a request line.
REQUEST_LINE_LIMIT = 8 * 1024 * 1024  # host -> cell: what the server reads
EVENT_LINE_LIMIT = 4 * 1024 * 1024  # cell -> host: what the client reads

Language = Literal["python", "shell"]
Stream = Literal["stdout", "stderr"]
EntryType = Literal["file", "dir", "link", "other"]
JobState = Literal["running", "exited", "lost"]


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
class Extract(Message):
    """Unpack an archive (ZIP, or tar plain or compressed with gzip, bzip2 or xz) into the
    workspace folder ``path``, made if missing. Followed by the archive as ``Chunk`` frames and
    one ``End``, as ``Write``; answered by a ``Beat`` every BEAT_S while it unpacks, then
    ``Extracted``. Nothing reaches the folder unless the whole archive passes: entries that leave
    the folder, links, devices and FIFOs are refused (``unsafe_archive``), and so are archives
    past the limits (``archive_too_large``). Files that exist are replaced, folders merged.
    A limit of 0 is none."""

    kind: ClassVar[str] = "extract"
    path: str = "."
    max_entries: int = EXTRACT_ENTRIES
    max_bytes: int = EXTRACT_BYTES  # unpacked, all entries together
    max_ratio: int = EXTRACT_RATIO  # an entry's unpacked size over its packed size (past 1 MiB)


@dataclass
class Delete(Message):
    kind: ClassVar[str] = "delete"
    path: str
    recursive: bool = False


@dataclass
class JobStart(Message):
    """Start a job: code run detached from any connection (python as ``python3 -u -c``, a fresh
    process; shell as ``bash -c``), its stdout and stderr in one log in the cell (2>&1), which
    outlives the connection and the host. ``external``: no process; the host writes the log
    (JobAppend) and ends it (JobEnd). Answered by ``JobInfo``."""

    kind: ClassVar[str] = "job_start"
    id: str
    code: str = ""
    language: Language = "shell"
    cwd: str = WORKSPACE
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 3600.0  # then killed (exit code 124, timed_out); external ones end so
    log_limit: int = JOB_LOG_LIMIT  # bytes of log kept; the rest is read and dropped
    external: bool = False


@dataclass
class JobStatus(Message):
    """Answered by ``JobInfo``."""

    kind: ClassVar[str] = "job_status"
    id: str


@dataclass
class JobList(Message):
    """Every job whose folder exists; answered by ``JobInfos``."""

    kind: ClassVar[str] = "job_list"


@dataclass
class JobWait(Message):
    """A ``Beat`` every BEAT_S while the job runs, then its ``JobInfo``."""

    kind: ClassVar[str] = "job_wait"
    id: str


@dataclass
class JobLog(Message):
    """The log from ``offset`` as Chunk frames, then ``End(size)``, size being the offset after
    the last byte sent. ``follow``: go on as it grows (a ``Beat`` after BEAT_S of silence) and
    end once the job has ended and all of it is sent."""

    kind: ClassVar[str] = "job_log"
    id: str
    offset: int = 0
    follow: bool = False


@dataclass
class JobCancel(Message):
    """Kill the job's whole process tree; answered by ``JobInfo`` once it is all dead. An ended
    job is left as it is."""

    kind: ClassVar[str] = "job_cancel"
    id: str


@dataclass
class JobAppend(Message):
    """Add text to an external job's log; answered by ``Ok``."""

    kind: ClassVar[str] = "job_append"
    id: str
    text: str


@dataclass
class JobEnd(Message):
    """End an external job; answered by ``JobInfo``."""

    kind: ClassVar[str] = "job_end"
    id: str
    exit_code: int


@dataclass
class JobForget(Message):
    """Delete an ended job's folder, log and all; answered by ``Ok``."""

    kind: ClassVar[str] = "job_forget"
    id: str


@dataclass
class EgressListen(Message):
    """Run the cell's egress forwarder while this connection lasts: ``Ok`` once it listens on
    127.0.0.1:EGRESS_PORT (``Conflict`` when it cannot, or another listen holds it), then an
    ``EgressOffer`` for each connection a program in the cell opens, a ``Beat`` every BEAT_S."""

    kind: ClassVar[str] = "egress_listen"


@dataclass
class EgressAccept(Message):
    """Take an offered connection: ``Ok``, then raw bytes both ways on this connection, each way
    ending on its EOF. ``NotFound`` once the offer was dropped (EGRESS_OFFER_TTL_S)."""

    kind: ClassVar[str] = "egress_accept"
    id: str


@dataclass
class Connect(Message):
    """Connect to ``port`` on the cell's loopback: ``Ok``, then raw bytes both ways on this
    connection, each way ending on its EOF (``port_closed`` when nothing listens there)."""

    kind: ClassVar[str] = "connect"
    port: int


@dataclass
class ListPorts(Message):
    """The TCP ports listening in the cell; answered by ``PortList``."""

    kind: ClassVar[str] = "list_ports"


@dataclass
class TerminalAttach(Message):
    """Attach to a terminal (``terminal``: its id), or start one (``""``: ``bash -i`` on a new
    pseudo-terminal of ``cols`` × ``rows``): ``TerminalInfo``, then raw bytes both ways on this
    connection — keystrokes in; output out, starting with the terminal's scrollback. A new
    attachment takes over from the one before; the stream ends once the shell has exited."""

    kind: ClassVar[str] = "terminal_attach"
    terminal: str = ""
    cols: int = 80
    rows: int = 24


@dataclass
class TerminalResize(Message):
    kind: ClassVar[str] = "terminal_resize"
    terminal: str
    cols: int
    rows: int


@dataclass
class ListTerminals(Message):
    """The cell's terminals; answered by ``TerminalInfos``."""

    kind: ClassVar[str] = "list_terminals"


@dataclass
class TerminalClose(Message):
    """End a terminal (its shell and what runs in its session are killed, if still running)
    and forget it; answered by its last ``TerminalInfo``, which has the exit code."""

    kind: ClassVar[str] = "terminal_close"
    terminal: str


@dataclass
class DesktopStart(Message):
    """Start the live desktop (an X display and a VNC server on it) unless it runs; answered
    by ``DesktopInfo`` once its VNC port listens."""

    kind: ClassVar[str] = "desktop_start"


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
class JobInfo(Message):
    """A job as it is. ``lost``: its folder has no final status and no executor runs it (the
    cell restarted while it ran). ``log_bytes``: the log's size now, our own notes included."""

    kind: ClassVar[str] = "job_info"
    id: str
    state: JobState
    exit_code: int | None  # negative -N when killed by signal N; 124 when timed out
    timed_out: bool
    cancelled: bool
    oom_killed: bool
    started_at: float  # unix time
    ended_at: float | None
    log_bytes: int
    log_truncated: bool


@dataclass
class JobInfos(Message):
    kind: ClassVar[str] = "job_infos"
    nested: ClassVar[bool] = True
    jobs: list[JobInfo]


@dataclass
class EgressOffer(Message):
    """A program in the cell connected to the forwarder; take it with ``EgressAccept(id)``."""

    kind: ClassVar[str] = "egress_offer"
    id: str


@dataclass
class Port:
    port: int
    address: str  # what it is bound to: 127.0.0.1, 0.0.0.0, ::1, ::
    pid: int | None  # of the program holding it, when the executor may see it
    command: str


@dataclass
class PortList(Message):
    kind: ClassVar[str] = "port_list"
    nested: ClassVar[bool] = True
    ports: list[Port]


@dataclass
class TerminalInfo(Message):
    kind: ClassVar[str] = "terminal_info"
    terminal: str
    pid: int  # of its shell
    cols: int
    rows: int
    attached: bool
    exit_code: int | None  # once its shell has exited


@dataclass
class TerminalInfos(Message):
    kind: ClassVar[str] = "terminal_infos"
    nested: ClassVar[bool] = True
    terminals: list[TerminalInfo]


@dataclass
class DesktopInfo(Message):
    kind: ClassVar[str] = "desktop_info"
    display: str  # for DISPLAY, e.g. ":99"
    vnc_port: int
    width: int
    height: int


@dataclass
class Extracted(Message):
    """An ``Extract`` done: the folder (workspace-relative), the archive's entries unpacked
    (files and folders) and the bytes of its files."""

    kind: ClassVar[str] = "extracted"
    path: str
    entries: int
    size: int


@dataclass
class Beat(Message):
    """Still there, nothing new: a waiter's or a follower's sign of life."""

    kind: ClassVar[str] = "beat"


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
        Extract,
        Delete,
        JobStart,
        JobStatus,
        JobList,
        JobWait,
        JobLog,
        JobCancel,
        JobAppend,
        JobEnd,
        JobForget,
        EgressListen,
        EgressAccept,
        Connect,
        ListPorts,
        TerminalAttach,
        TerminalResize,
        ListTerminals,
        TerminalClose,
        DesktopStart,
        Chunk,
        End,
        Pong,
        Output,
        Exit,
        Entries,
        Processes,
        JobInfo,
        JobInfos,
        EgressOffer,
        PortList,
        TerminalInfo,
        TerminalInfos,
        DesktopInfo,
        Extracted,
        Beat,
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
        if cls is PortList:
            body["ports"] = [Port(**e) for e in body["ports"]]
        if cls is TerminalInfos:
            body["terminals"] = [TerminalInfo(**e) for e in body["terminals"]]
        if cls is JobInfos:
            body["jobs"] = [JobInfo(**e) for e in body["jobs"]]
        return cls(**body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"bad message: {str(line)[:200]!r}: {exc}") from exc
