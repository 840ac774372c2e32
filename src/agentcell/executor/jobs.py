"""Jobs: code run detached from any connection, its output kept in a log in the cell, which
outlives both the connection and the host's server (DESIGN §9). Standard library only.

A job runs ``python3 -u -c CODE`` or ``bash -c CODE`` under a holder (holder.py) in a session of
its own, stdout and stderr on one pipe (2>&1) that this executor reads and appends to the job's
log (job.py). At the main process's end, at the job's timeout (which this executor keeps, so it
holds while the host is away) and on cancel, the holder's whole tree is killed, as a shell
exec's is (round after round until the main process is gone: a holder just forked may not have
started it yet); then the final status is written. An external job has no process: the host
writes its log and ends it (an agent job, whose loop runs on the server).

Waiters and followers never slow a job: followers read the log file, each at its own pace with
a bounded window of its own, woken by the job's every append; a ``Beat`` tells them, every
BEAT_S of silence, that the executor is there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import re
import shutil
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from . import protocol as p
from .conn import Conn, Fail
from .files import make_dirs, os_errors
from .holder import fork_holder, read_status
from .job import JOB_FILE, Job, from_disk, open_log, write_record
from .procs import OomCounter, wait_any, watch_exit
from .tree import kill_session, kill_tree

T = TypeVar("T")
Handler = Callable[[Any, Conn], Awaitable[None]]
ID = re.compile(f"[{p.JOB_ID_CHARS}]{{1,{p.JOB_ID_MAX}}}")
READ_BYTES = 64 * 1024
DRAIN_READS = 64  # reads of the pipe at the job's end: an escaped writer must not hold us
WINDOW = 1024 * 1024  # a follower's bytes in flight before it waits for its client
KILL_ROUNDS_S = 0.02  # between kills of the tree while its holder has not exited
KILL_PATIENCE_S = 1.0  # then the job ends anyway; the holder is finished off in the background


class Runner(Protocol):
    """What jobs use of the executor server: its checks and its way of starting a holder."""

    root: str
    shell: str
    holders: set[int]
    ooms: OomCounter

    def cwd(self, cwd: str) -> str: ...
    def env(self, extra: dict[str, str]) -> dict[str, str]: ...
    async def fork(self, start: Callable[[], T]) -> T: ...
    def forget(self, holder: int) -> None: ...
    def spawn(self, work: Coroutine[Any, Any, None]) -> None: ...
    async def finish_off(self, holder: int, held: asyncio.Future[int]) -> None: ...


class Jobs:
    """The job requests. ``live`` holds the jobs this executor started (ended ones too, until
    forgotten); any other job is known by its folder alone."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.folder = os.path.join(runner.root, p.JOBS_DIR)
        self.live: dict[str, Job] = {}
        self.holders: dict[str, int] = {}  # of running jobs with a process
        self.forking: dict[str, asyncio.Future[None]] = {}  # jobs not in ``live`` yet

    def handlers(self) -> dict[type[p.Message], Handler]:
        return {
            p.JobStart: self.start,
            p.JobStatus: self.status,
            p.JobList: self.list,
            p.JobWait: self.wait,
            p.JobLog: self.log,
            p.JobCancel: self.cancel,
            p.JobAppend: self.append,
            p.JobEnd: self.end,
            p.JobForget: self.forget,
        }

    def shutdown(self) -> None:
        """The cell is stopping: kill every job's processes (they are lost, not ended)."""
        for holder in self.holders.values():
            kill_tree(holder, include_root=True)
            kill_session(holder)

    # --- starting and running ------------------------------------------------------------

    async def start(self, req: p.JobStart, conn: Conn) -> None:
        check_start(req)
        argv: list[str] = []
        if not req.external:
            cwd, env = self.runner.cwd(req.cwd), self.runner.env(req.env)
            python = [sys.executable, "-u", "-c"]
            argv = [*(python if req.language == "python" else [self.runner.shell, "-c"]), req.code]
        folder = os.path.join(self.folder, req.id)
        if req.id in self.forking or (req.id in self.live and self.live[req.id].running):
            raise conflict(req.id)
        with os_errors(f"{p.JOBS_DIR}/{req.id}"):
            make_dirs(self.folder)
            try:
                os.mkdir(folder)  # claims the id, at once: a second start of it finds it taken
            except FileExistsError:
                raise conflict(req.id) from None
        # A cancel waits for this while the holder is forked (which, at the pids limit, waits).
        self.forking[req.id] = forked = asyncio.get_running_loop().create_future()
        try:
            with os_errors(f"{p.JOBS_DIR}/{req.id}"):
                started_at = time.time()
                kind = {"language": req.language, "external": req.external}
                write_record(folder, JOB_FILE, {"id": req.id, "started_at": started_at, **kind})
                job = Job(req, folder, started_at)
            if req.external:
                job.timer = job.loop.call_later(req.timeout_s, self.time_out, job, None)
            else:
                try:
                    spawned = await self.runner.fork(
                        lambda: fork_holder(argv, cwd, env, merged=True)
                    )
                except BaseException:
                    os.close(job.log_fd)
                    raise
                self.run(job, *spawned)
            self.live[req.id] = job
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            del self.forking[req.id]
            forked.set_result(None)
        conn.write(job.info().encode())

    def run(self, job: Job, holder: int, out: int, _err: int, status_fd: int) -> None:
        runner = self.runner
        runner.holders.add(holder)  # a holder of ours: a sweep at the pids limit spares it
        self.holders[job.id] = holder
        held = watch_exit(holder)
        held.add_done_callback(lambda _: runner.forget(holder))
        os.set_blocking(out, False)
        job.loop.add_reader(out, self.pump, job, out)
        job.timer = job.loop.call_later(job.timeout_s, self.time_out, job, holder)
        runner.spawn(self.ending(job, holder, held, read_status(status_fd), out))

    def pump(self, job: Job, fd: int) -> bool:
        """Move what the pipe holds now into the log; False once there is nothing more now."""
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            job.loop.remove_reader(fd)
            return False
        job.output(data)
        return True

    async def ending(
        self,
        job: Job,
        holder: int,
        held: asyncio.Future[int],
        status: asyncio.Future[int | None],
        out: int,
    ) -> None:
        ooms = self.runner.ooms()
        status_ = await status  # the main process is gone: timed out, cancelled or its own end
        job.exited = True
        await self.kill(holder, held)  # what it left goes, as a non-background exec's does
        for _ in range(DRAIN_READS):
            if not self.pump(job, out):
                break
        job.loop.remove_reader(out)
        os.close(out)
        self.holders.pop(job.id, None)
        if status_ is None:
            job.note("agentcell: the job could not start: the cell is at its process limit")
            code = 127
        else:
            code = os.waitstatus_to_exitcode(status_)
        killed = code in (-signal.SIGKILL, 128 + signal.SIGKILL)
        verdict = job.cancelled or job.timed_out
        job.oom_killed = killed and not verdict and self.runner.ooms() > ooms
        job.finish(p.TIMED_OUT if job.timed_out else code)

    async def kill(self, holder: int, held: asyncio.Future[int]) -> None:
        """Kill the holder's tree and session until the holder exits (it does once it has
        reaped the last of it), for a second at most; then go on, and finish it off later."""
        deadline = time.monotonic() + KILL_PATIENCE_S
        while True:
            kill_tree(holder)
            kill_session(holder)  # without a subreaper, orphans left for PID 1 stay in it
            await wait_any((held,), KILL_ROUNDS_S)
            if held.done() or time.monotonic() > deadline:
                break
        if held.done():
            kill_session(holder)
        else:
            self.runner.spawn(self.runner.finish_off(holder, held))

    def time_out(self, job: Job, holder: int | None) -> None:
        if job.exited:
            return
        job.timed_out = True
        self.stop(job, holder)

    def stop(self, job: Job, holder: int | None) -> None:
        """Kill the job's main process (the rest goes in ``ending``); an external job ends."""
        if holder is None:
            job.finish(p.TIMED_OUT if job.timed_out else None)
        else:
            self.runner.spawn(self.stopping(job, holder))

    async def stopping(self, job: Job, holder: int) -> None:
        """Kill the holder's tree until the job's main process is gone. Once is not enough: a
        holder just forked starts bash only once it has set itself up (its session, the
        subreaper), and a kill before that finds nothing. If the main process has not gone
        within KILL_PATIENCE_S, the holder goes too (its status reads as SIGKILL), so that a
        cancel never waits longer."""
        deadline = time.monotonic() + KILL_PATIENCE_S
        while not job.exited:
            if time.monotonic() > deadline:
                kill_tree(holder, include_root=True)
                return
            kill_tree(holder)
            kill_session(holder)
            await wait_any((job.ended,), KILL_ROUNDS_S)

    # --- looking ------------------------------------------------------------------------

    def find(self, job_id: object) -> Job | p.JobInfo:
        """A job by id: ours (running, or ended with its folder still there), or its folder's."""
        if not isinstance(job_id, str) or not ID.fullmatch(job_id):
            raise Fail("invalid_request", f"not a job id: {str(job_id)[:100]!r}")
        job = self.live.get(job_id)
        if job is not None and job.running:
            return job
        folder = os.path.join(self.folder, job_id)
        if not os.path.isdir(folder):
            self.live.pop(job_id, None)
            raise Fail("not_found", f"no job {job_id}")
        return job if job is not None else from_disk(folder, job_id)

    async def status(self, req: p.JobStatus, conn: Conn) -> None:
        conn.write(info_of(self.find(req.id)).encode())

    async def list(self, _req: p.JobList, conn: Conn) -> None:
        names: set[str] = {i for i, job in self.live.items() if job.running}
        with contextlib.suppress(OSError):
            names.update(n for n in os.listdir(self.folder) if ID.fullmatch(n))
        found: list[p.JobInfo] = []
        for name in names:
            with contextlib.suppress(Fail):
                found.append(info_of(self.find(name)))
        found.sort(key=lambda info: (info.started_at, info.id))
        conn.write(p.JobInfos(found).encode())

    async def wait(self, req: p.JobWait, conn: Conn) -> None:
        job = self.find(req.id)
        if isinstance(job, Job) and job.running:
            gone = conn.hangup()
            while job.running:
                await wait_any((job.ended, gone), p.BEAT_S)
                if gone.done():
                    return
                if job.running:
                    conn.write(p.Beat().encode())
        conn.write(info_of(job).encode())

    async def log(self, req: p.JobLog, conn: Conn) -> None:
        if not isinstance(req.offset, int) or isinstance(req.offset, bool) or req.offset < 0:
            raise Fail("invalid_request", "offset must be a byte count")
        job = self.find(req.id)
        if isinstance(job, Job) and job.running:
            fd = os.dup(job.log_fd)  # the job's own file, even if its name is taken meanwhile
            try:
                await follow(job, fd, req.offset, bool(req.follow), conn)
            finally:
                os.close(fd)
            return
        log = open_log(os.path.join(self.folder, req.id))
        if log is None:
            conn.write(p.End(0).encode())
            return
        try:
            size = os.fstat(log).st_size
            end = await send(log, req.offset, size, conn) if req.offset < size else size
            conn.write(p.End(end).encode())
        finally:
            os.close(log)

    # --- changing -----------------------------------------------------------------------

    async def cancel(self, req: p.JobCancel, conn: Conn) -> None:
        if (forked := self.forking.get(req.id)) is not None:
            await forked
        job = self.find(req.id)
        if isinstance(job, Job) and job.running:
            if not job.exited:
                job.cancelled = True
                self.stop(job, self.holders.get(job.id))
            await job.ended
        conn.write(info_of(job).encode())

    def external(self, job_id: object) -> Job | p.JobInfo:
        """An external job; one this executor does not hold has ended (or is lost)."""
        job = self.find(job_id)
        if isinstance(job, Job) and not job.external:
            raise Fail("invalid_request", f"job {job_id} runs code: its log is its own")
        if isinstance(job, p.JobInfo) and job.state == "lost":
            raise Fail("conflict", f"job {job_id} was lost: the cell restarted while it ran")
        return job

    async def append(self, req: p.JobAppend, conn: Conn) -> None:
        job = self.external(req.id)
        if not isinstance(req.text, str):
            raise Fail("invalid_request", "text must be a string")
        if not (isinstance(job, Job) and job.running):
            raise Fail("conflict", f"job {req.id} has ended: its log is closed")
        job.output(req.text.encode(errors="surrogatepass"))
        conn.write(p.Ok().encode())

    async def end(self, req: p.JobEnd, conn: Conn) -> None:
        """End an external job; one that has ended already is left as it is."""
        job = self.external(req.id)
        if not isinstance(req.exit_code, int) or isinstance(req.exit_code, bool):
            raise Fail("invalid_request", "exit_code must be an integer")
        if isinstance(job, Job):
            job.finish(req.exit_code)
        conn.write(info_of(job).encode())

    async def forget(self, req: p.JobForget, conn: Conn) -> None:
        job = self.find(req.id)
        if isinstance(job, Job) and job.running:
            raise Fail("conflict", f"job {req.id} is running: cancel it first")
        folder = os.path.join(self.folder, req.id)
        with os_errors(f"{p.JOBS_DIR}/{req.id}"):
            if stat.S_ISDIR(os.lstat(folder).st_mode):
                shutil.rmtree(folder)
            else:  # a link the cell's code made: the link goes, not what it points to
                os.unlink(folder)
        self.live.pop(req.id, None)
        conn.write(p.Ok().encode())


async def follow(job: Job, fd: int, offset: int, more: bool, conn: Conn) -> None:
    """Send a running job's log from offset; with ``more``, on as it grows, until its end."""
    if offset > job.size:
        conn.write(p.End(job.size).encode())
        return
    gone = conn.hangup() if more else None
    pos = offset
    while True:
        ended = not job.running  # read first: what was written before the end goes out below
        before, pos = pos, await send(fd, pos, job.size, conn)
        if ended or gone is None:
            break
        if before < pos < job.size:
            continue  # it grew while we sent
        grew = job.grew
        await wait_any((grew, job.ended, gone), p.BEAT_S)
        if gone.done():
            return
        if not (grew.done() or job.ended.done()):
            conn.write(p.Beat().encode())
    conn.write(p.End(pos).encode())


async def send(fd: int, pos: int, end: int, conn: Conn) -> int:
    """Chunk frames of fd's bytes from pos up to end (or the file's end, if it was cut short);
    the offset after the last byte sent. Waits for the client whenever WINDOW is in flight."""
    while pos < end:
        data = os.pread(fd, min(p.CHUNK_BYTES, end - pos), pos)
        if not data:
            break
        conn.write(p.Chunk(base64.b64encode(data).decode()).encode())
        pos += len(data)
        if len(conn.out) > WINDOW:
            await conn.drain()
    return pos


def info_of(job: Job | p.JobInfo) -> p.JobInfo:
    return job.info() if isinstance(job, Job) else job


def conflict(job_id: str) -> Fail:
    return Fail("conflict", f"job {job_id} exists already: choose another id")


def check_start(req: p.JobStart) -> None:
    if not isinstance(req.id, str) or not ID.fullmatch(req.id):
        raise Fail(
            "invalid_request",
            f"a job id is 1 to {p.JOB_ID_MAX} letters, digits, '_' or '-': {str(req.id)[:100]!r}",
        )
    if req.language not in ("python", "shell"):
        raise Fail("invalid_request", f"unknown language {req.language!r}: use python or shell")
    if not isinstance(req.code, str) or "\0" in req.code:
        raise Fail("invalid_request", "code must be a string without NUL bytes")
    if not isinstance(req.timeout_s, int | float) or not 0 < req.timeout_s < math.inf:
        raise Fail("invalid_request", "timeout_s must be a positive number")
    if not isinstance(req.log_limit, int) or isinstance(req.log_limit, bool) or req.log_limit < 0:
        raise Fail("invalid_request", "log_limit must be a count of bytes")
    if not isinstance(req.external, bool):
        raise Fail("invalid_request", "external must be true or false")
