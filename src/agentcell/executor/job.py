"""One job and its folder: the log it appends to, the records that outlive the executor, and
reading them back. Standard library only.

A job's folder (``<workspace>/.agentcell/jobs/<id>/``) holds ``job.json``, written at its start,
``log``, its output as the executor wrote it, and ``status.json``, written atomically once it has
ended. The folder is the cell's user's to touch, so what is read back is checked, and a job whose
final status is missing or bad is ``lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import stat
import time
from typing import Any

from . import protocol as p

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
LOG_FILE = "log"
RECORD_BYTES = 64 * 1024  # a record read back is refused beyond this
OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
BOOLS = ("timed_out", "cancelled", "oom_killed", "log_truncated")
FIELDS = {f.name for f in dataclasses.fields(p.JobInfo)}


class Job:
    """A job this executor runs: its log, its end, and the futures its waiters and followers
    await. Output is appended to the log at once (the job never waits for a reader); past the
    limit it is dropped, with one line of ours saying so."""

    def __init__(self, req: p.JobStart, folder: str, started_at: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.id = req.id
        self.folder = folder
        self.external = req.external
        self.limit = req.log_limit
        self.timeout_s = req.timeout_s
        self.started_at = started_at
        self.log_fd = os.open(
            os.path.join(folder, LOG_FILE),
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | OPEN_FLAGS,
            0o644,
        )
        self.size = 0  # bytes in the log, notes included
        self.kept = 0  # bytes of the job's own output in the log
        self.truncated = False
        self.ends_line = True
        self.exited = False  # the main process is gone (or the host ended it): no more verdicts
        self.exit_code: int | None = None
        self.timed_out = self.cancelled = self.oom_killed = False
        self.ended_at: float | None = None
        self.timer: asyncio.TimerHandle | None = None  # of its timeout
        self.ended: asyncio.Future[None] = self.loop.create_future()  # status.json is written
        self.grew: asyncio.Future[None] = self.loop.create_future()  # replaced at each append

    @property
    def running(self) -> bool:
        return not self.ended.done()

    def info(self) -> p.JobInfo:
        return p.JobInfo(
            id=self.id,
            state="running" if self.running else "exited",
            exit_code=self.exit_code,
            timed_out=self.timed_out,
            cancelled=self.cancelled,
            oom_killed=self.oom_killed,
            started_at=self.started_at,
            ended_at=self.ended_at,
            log_bytes=self.size,
            log_truncated=self.truncated,
        )

    def output(self, data: bytes) -> None:
        """The job's own bytes, within its log limit."""
        if self.truncated or not data:
            return
        room = self.limit - self.kept
        cut = len(data) > room
        data = data[:room] if cut else data
        self.kept += len(data)
        self.append(data)
        if cut:
            self.truncated = True
            self.note(f"agentcell: log truncated at {self.limit} bytes")

    def note(self, line: str) -> None:
        """A line of ours, on a line of its own, beyond the log limit."""
        self.append(("" if self.ends_line else "\n").encode() + line.encode() + b"\n")

    def append(self, data: bytes) -> None:
        if not data or not self.running:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.log_fd, view) :]
        except OSError as exc:  # a full workspace: what does not fit is lost
            log.warning("job %s: cannot write its log: %s", self.id, exc)
        self.size += len(data) - len(view)
        self.ends_line = data.endswith(b"\n")
        self.wake()

    def wake(self) -> None:
        grew, self.grew = self.grew, self.loop.create_future()
        grew.set_result(None)

    def finish(self, exit_code: int | None) -> None:
        """The job's end: our last notes, status.json, then everyone waiting is told."""
        if not self.running:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.exited = True
        self.exit_code = exit_code
        if self.timed_out:
            self.note(f"agentcell: timed out after {self.timeout_s:g} s")
        elif self.cancelled:
            self.note("agentcell: cancelled")
        self.ended_at = time.time()
        self.ended.set_result(None)
        os.close(self.log_fd)  # followers read their own duplicate of it
        try:
            write_record(self.folder, STATUS_FILE, vars(self.info()))
        except OSError as exc:  # its folder is gone, or the workspace full: it will read as lost
            log.warning("job %s: cannot write its status: %s", self.id, exc)
        self.wake()


def write_record(folder: str, name: str, body: dict[str, Any]) -> None:
    """Replace folder/name atomically with body as JSON. Not synced to disk: a restart of the
    server or of the cell keeps it (the page cache outlives both); after a crash of the host a
    record that did not make it reads as bad, and its job as lost, which is then the truth."""
    tmp = os.path.join(folder, f".{name}-{os.urandom(6).hex()}~")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, 0o644)
    try:
        try:
            os.write(fd, json.dumps(body, separators=(",", ":")).encode())
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_record(folder: str, name: str) -> dict[str, Any] | None:
    """folder/name as a JSON object; None when it is missing, not a regular file, too large or
    not an object."""
    try:
        fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NONBLOCK | OPEN_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = os.read(fd, RECORD_BYTES + 1)
        body = json.loads(raw) if len(raw) <= RECORD_BYTES else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return body if isinstance(body, dict) else None


def open_log(folder: str) -> int | None:
    """A read-only fd of a job's log (never through a link); None when there is none."""
    try:
        fd = os.open(os.path.join(folder, LOG_FILE), os.O_RDONLY | os.O_NONBLOCK | OPEN_FLAGS)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def from_disk(folder: str, job_id: str) -> p.JobInfo:
    """A job no executor here runs, as its folder tells: its final status when that is sound,
    else ``lost``."""
    ended = ended_info(read_record(folder, STATUS_FILE), job_id)
    if ended is not None:
        return ended
    fd = open_log(folder)
    size = 0
    if fd is not None:
        size = os.fstat(fd).st_size
        os.close(fd)
    return p.JobInfo(job_id, "lost", None, False, False, False, started(folder), None, size, False)


def started(folder: str) -> float:
    """When the job started, by its job.json (else by its folder)."""
    at = (read_record(folder, JOB_FILE) or {}).get("started_at")
    if is_time(at):
        return float(at)  # type: ignore[arg-type]
    try:
        return os.lstat(folder).st_mtime
    except OSError:
        return 0.0


def ended_info(body: dict[str, Any] | None, job_id: str) -> p.JobInfo | None:
    """The JobInfo in a status.json, if it is one of an ended job of this id; else None."""
    if body is None or set(body) != FIELDS:
        return None
    code = body["exit_code"]
    sound = (
        body["id"] == job_id
        and body["state"] == "exited"
        and (code is None or is_int(code))
        and all(type(body[k]) is bool for k in BOOLS)
        and is_time(body["started_at"])
        and is_time(body["ended_at"])
        and is_int(body["log_bytes"])
        and body["log_bytes"] >= 0
    )
    return p.JobInfo(**body) if sound else None


def is_int(value: object) -> bool:
    return type(value) is int


def is_time(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]
