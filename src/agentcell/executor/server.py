"""The executor server that runs inside a cell. Standard library only; it imports nothing but
``protocol`` from its own package, because the image copies this package on its own.

One request per connection on a Unix socket (see protocol.py). Python code runs in named,
long-lived kernel processes (kernel.py); shell code runs in a fresh ``bash -c``. Each runs in
its own session, so a timeout or an interrupt reaches its whole process group. Sockets and
pipes are used raw (non-blocking, with loop readers): a warm exec is made of fixed costs, and
asyncio's streams and transports are a good part of them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import codecs
import contextlib
import errno
import json
import logging
import math
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as p

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024  # at most this much output per Output event
LINE_LIMIT = 8 * 1024 * 1024
HIGH_WATER = 1024 * 1024  # pause the output pipes while this much waits for the client
DRAIN_READS = 32  # reads per pipe at the end: a background writer must not hold us forever
KILL_GRACE_S = 1.0
COALESCE_S = 0.002
KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel.py")
OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
STREAMS: tuple[p.Stream, ...] = ("stdout", "stderr")


class Fail(Exception):
    """A request error that the client is told about as an Error event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(msg: p.Message) -> bytes:
    """Message.encode for flat messages, without dataclasses.asdict's deep copies."""
    return json.dumps(dict(vars(msg), kind=msg.kind), separators=(",", ":")).encode() + b"\n"


# --- processes ---------------------------------------------------------------------------------


def raise_oom_score() -> None:
    """Make the OOM killer prefer this process over the server (raising it needs no privilege)."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "wb") as f:
        f.write(b"500")


def killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class OomCounter:
    """The memory cgroup's oom_kill count (cgroup v2 or v1); 0 when there is none."""

    def __init__(self) -> None:
        self.fd = -1
        for path in OOM_FILES:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                break

    def __call__(self) -> int:
        for line in os.pread(self.fd, 4096, 0).splitlines() if self.fd >= 0 else ():
            if line.startswith(b"oom_kill "):
                return int(line.split()[1])
        return 0


def watch_exit(proc: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """A future of the wait status of our own child, reaped by pid (never waitpid(-1))."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()

    def reap(status: int) -> None:
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never reaps it itself
        if not fut.done():
            fut.set_result(status)

    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (old kernel, strict seccomp): a thread waits instead
        waiter = loop.run_in_executor(None, os.waitpid, proc.pid, 0)
        waiter.add_done_callback(lambda f: reap(f.result()[1]))
        return fut

    def ready() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            reap(os.waitpid(proc.pid, 0)[1])
        except ChildProcessError:
            reap(signal.SIGKILL)

    loop.add_reader(pidfd, ready)
    return fut


def spawn(argv: list[str], cwd: str, env: dict[str, str], **kw: Any) -> tuple[Any, Pump]:
    """Start argv in a new session, stdin from /dev/null, stdout/stderr on fresh pipes."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=cwd,
            env=env,
            start_new_session=True,
            **kw,
        )
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return proc, Pump({"stdout": out_r, "stderr": err_r})


async def wait_any(futures: tuple[asyncio.Future[Any], ...], timeout: float) -> None:
    """Wait until one of the futures is done, or the timeout passes (cheaper than asyncio.wait)."""
    if any(f.done() for f in futures):
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(timeout, wake)
    for f in futures:
        f.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        for f in futures:
            f.remove_done_callback(wake)


# --- the client's connection and the code's output ---------------------------------------------


class Conn:
    """One client connection on a non-blocking socket: lines in, buffered writes out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # loops are given fds: a socket object costs a repr each time
        self.loop = asyncio.get_running_loop()
        self.inbuf = bytearray()
        self.out = bytearray()
        self.lost = False  # the client hung up
        self.closing = False
        self.flushed: asyncio.Future[None] | None = None

    async def readline(self) -> bytes:
        """The next line; b"" when the client hung up before sending one."""
        start = 0
        while (end := self.inbuf.find(b"\n", start)) < 0:
            if len(self.inbuf) > LINE_LIMIT:
                raise Fail("invalid_request", "message too long")
            start = len(self.inbuf)
            try:
                data = await self.loop.sock_recv(self.sock, READ_BYTES)
            except OSError:
                data = b""
            if not data:
                return b""
            self.inbuf += data
        line = bytes(self.inbuf[: end + 1])
        del self.inbuf[: end + 1]
        return line

    def write(self, data: bytes) -> None:
        if self.lost:
            return
        if not self.out:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._hung_up()
                return
            if sent == len(data):
                return
            data = data[sent:]
            self.loop.add_writer(self.fd, self._flush)
        self.out += data

    def _flush(self) -> None:
        try:
            del self.out[: self.sock.send(self.out)]
        except BlockingIOError:
            return
        except OSError:
            self._hung_up()
        if not self.out:
            self.loop.remove_writer(self.fd)
            if self.flushed is not None and not self.flushed.done():
                self.flushed.set_result(None)
            if self.closing:
                self.sock.close()

    def _hung_up(self) -> None:
        self.lost = True
        self.out.clear()

    async def drain(self) -> None:
        if self.out:
            self.flushed = self.loop.create_future()
            await self.flushed
        if self.lost:
            raise ConnectionResetError("the client hung up")

    def hangup(self) -> asyncio.Future[None]:
        """Done when the client hangs up; watched while code runs (the client sends nothing)."""
        fut: asyncio.Future[None] = self.loop.create_future()

        def check() -> None:
            try:
                if self.sock.recv(4096):
                    return
            except BlockingIOError:
                return
            except OSError:
                pass
            self.loop.remove_reader(self.fd)
            if not fut.done():
                fut.set_result(None)

        self.loop.add_reader(self.fd, check)
        return fut

    def close(self) -> None:
        """Close once everything written has gone out."""
        self.loop.remove_reader(self.fd)
        if self.out and not self.lost:
            self.closing = True
        else:
            self.loop.remove_writer(self.fd)
            self.sock.close()


class Pump:
    """Reads raw, non-blocking pipe fds (no hidden buffers) and hands the bytes to a sink."""

    def __init__(self, fds: dict[p.Stream, int]) -> None:
        self.loop = asyncio.get_running_loop()
        self.fds = fds
        self.sink: Sink | None = None  # None: output is read and dropped
        for fd in fds.values():
            os.set_blocking(fd, False)
        self.resume()

    def resume(self) -> None:
        for stream, fd in self.fds.items():
            self.loop.add_reader(fd, self.read, stream, fd)

    def pause(self) -> None:
        for fd in self.fds.values():
            self.loop.remove_reader(fd)

    def read(self, stream: p.Stream, fd: int) -> bool:
        """Read once; False when there is nothing more to read now."""
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(fd)
            os.close(fd)
            del self.fds[stream]
            return False
        if self.sink is not None:
            self.sink.feed(stream, data)
        return True

    def drain(self) -> None:
        """Read what the pipes hold now, without waiting for more."""
        for stream, fd in list(self.fds.items()):
            for _ in range(DRAIN_READS):
                if not self.read(stream, fd):
                    break

    def close(self) -> None:
        self.pause()
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class Sink:
    """Turns one exec's output into Output events, within its output limit. Events wait up
    to COALESCE_S to go out together: most short execs then answer in one write, Exit included."""

    def __init__(self, conn: Conn, limit: int, pump: Pump) -> None:
        self.conn = conn
        self.room = limit
        self.pump = pump
        self.truncated = False
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in STREAMS}
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.final = False  # at the end, everything goes out with the Exit
        self.draining: asyncio.Task[None] | None = None

    def feed(self, stream: p.Stream, data: bytes) -> None:
        if len(data) > self.room:
            data = data[: self.room]
            self.truncated = True
        self.room -= len(data)
        if data:
            self.emit(stream, self.decoders[stream].decode(data))

    def emit(self, stream: p.Stream, text: str) -> None:
        if not text:
            return
        self.pending.append(encode(p.Output(stream, text)))
        self.pending_bytes += len(self.pending[-1])
        if self.final:
            return
        if self.pending_bytes >= READ_BYTES:
            self.flush()
        elif self.timer is None:
            self.timer = self.pump.loop.call_later(COALESCE_S, self.flush)

    def flush(self, tail: bytes = b"") -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.conn.write(b"".join([*self.pending, tail]))
        self.pending.clear()
        self.pending_bytes = 0
        if self.draining is None and len(self.conn.out) > HIGH_WATER:
            self.pump.pause()  # backpressure: the code blocks on a full pipe
            self.draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.conn.drain()
        self.draining = None
        if self.pump.sink is self:
            self.pump.resume()

    def finish(self, drain: Callable[[], None]) -> None:
        """Take the output left in the pipes, to go out in one write with the Exit."""
        self.final = True
        drain()
        for stream, decoder in self.decoders.items():
            # Bytes held back by a cut are dropped, not turned into replacement characters.
            self.emit(stream, "" if self.truncated else decoder.decode(b"", final=True))

    def exit(self, msg: p.Exit) -> None:
        self.flush(encode(msg))


# --- python contexts ---------------------------------------------------------------------------


class Context:
    """One python kernel process, started on demand; one exec at a time."""

    pump: Pump
    exited: asyncio.Future[int]
    control: socket.socket

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.busy = False
        self.replies = bytearray()
        self.reply: asyncio.Future[bytes] | None = None

    def start(self, cwd: str, env: dict[str, str]) -> None:
        self.control, child = socket.socketpair()
        try:
            cmd = [sys.executable, KERNEL, str(child.fileno())]
            self.proc, self.pump = spawn(cmd, cwd, env, pass_fds=(child.fileno(),))
        except BaseException:
            self.control.close()
            raise
        finally:
            child.close()
        self.exited = watch_exit(self.proc)
        self.replies.clear()
        self.control.setblocking(False)
        self.loop.add_reader(self.control.fileno(), self.on_control)

    def on_control(self) -> None:
        try:
            data = self.control.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.control.fileno())
        self.replies += data
        end = self.replies.find(b"\n")
        if (end >= 0 or not data) and self.reply is not None and not self.reply.done():
            self.reply.set_result(bytes(self.replies[: end + 1]))
        if end >= 0:
            del self.replies[: end + 1]

    def signal(self, sig: int) -> None:
        if self.proc is not None and not self.exited.done():
            killpg(self.proc.pid, sig)

    async def close(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            await self.exited
            self.pump.close()
            self.loop.remove_reader(self.control.fileno())
            self.control.close()
            self.proc = None

    async def run(
        self, req: p.Exec, cwd: str, gone: asyncio.Future[None]
    ) -> tuple[int, bool, bool]:
        """Run one exec: (exit code, timed out, the context died)."""
        self.reply = reply = self.loop.create_future()
        request = json.dumps({"code": req.code, "cwd": cwd, "env": req.env}).encode() + b"\n"
        with contextlib.suppress(OSError):  # if it died, its exit says so
            await self.loop.sock_sendall(self.control, request)
        await wait_any((reply, self.exited, gone), req.timeout_s)
        timed_out = not (reply.done() or self.exited.done())
        if timed_out:
            self.signal(signal.SIGINT)
            await wait_any((reply, self.exited), KILL_GRACE_S)
            if not (reply.done() or self.exited.done()):
                self.signal(signal.SIGKILL)
        line = reply.result() if reply.done() else b""
        self.reply = None
        if line:
            return int(json.loads(line)["exit_code"]), timed_out, False
        self.signal(signal.SIGKILL)  # dead, or it closed its control socket: no use any more
        return os.waitstatus_to_exitcode(await self.exited), timed_out, True


# --- the server --------------------------------------------------------------------------------

Handler = Callable[[Any, Conn], Awaitable[None]]


class Executor:
    def __init__(self, workspace: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.root = os.path.realpath(workspace)
        self.tmp = os.path.realpath("/tmp")
        self.contexts: dict[str, Context] = {}
        self.groups: set[int] = set()  # process groups of shells, killed at shutdown
        self.tasks: set[asyncio.Task[None]] = set()
        self.ooms = OomCounter()
        self.shell = shutil.which("bash") or "/bin/sh"
        self.base_env = {
            "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
            "TERM": "dumb",
        }
        self.handlers: dict[type[p.Message], Handler] = {
            p.Ping: self.ping,
            p.Exec: self.exec,
            p.Interrupt: self.interrupt,
            p.CloseContext: self.close_context,
            p.ListDir: self.list,
            p.Read: self.read,
            p.Write: self.write,
            p.Delete: self.delete,
        }

    def listen(self, path: str) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale, from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)  # born 0600: only our uid (and root, the host) may connect
        try:
            sock.bind(path)
        finally:
            os.umask(umask)
        sock.listen(1024)
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self.accept, sock)
        return sock

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of fds: back off instead of spinning
                log.warning("accept failed: %s", exc)
                self.loop.remove_reader(listener.fileno())
                self.loop.call_later(
                    0.1, self.loop.add_reader, listener.fileno(), self.accept, listener
                )
                return
            sock.setblocking(False)
            task = self.loop.create_task(self.handle(Conn(sock)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def handle(self, conn: Conn) -> None:
        msg: p.Message | None = None
        try:
            line = await conn.readline()
            if line:
                msg = p.decode(line)
                handler = self.handlers.get(type(msg))
                if handler is None:
                    raise Fail("invalid_request", f"{msg.kind} is not a request")
                await handler(msg, conn)
        except ConnectionError:
            pass
        except Exception as exc:
            await answer_error(conn, error_of(exc, msg), msg)
        finally:
            conn.close()

    def shutdown(self) -> None:
        for ctx in self.contexts.values():
            ctx.signal(signal.SIGKILL)
        for pgid in self.groups:
            killpg(pgid, signal.SIGKILL)

    async def ping(self, _msg: p.Ping, conn: Conn) -> None:
        conn.write(encode(p.Pong(uid=os.getuid(), pid=os.getpid())))

    async def exec(self, req: p.Exec, conn: Conn) -> None:
        check_exec(req)
        cwd, env = self.cwd(req.cwd), self.env(req.env)
        gone = conn.hangup()  # if the client hangs up, the code is stopped as on a timeout
        run = self.run_shell if req.language == "shell" else self.run_python
        await run(req, cwd, env, conn, gone)

    async def run_shell(
        self, req: p.Exec, cwd: str, env: dict[str, str], conn: Conn, gone: asyncio.Future[None]
    ) -> None:
        start, ooms = time.monotonic(), self.ooms()
        proc, pump = spawn([self.shell, "-c", req.code], cwd, env, preexec_fn=raise_oom_score)
        self.groups.add(proc.pid)
        pump.sink = out = Sink(conn, req.output_limit, pump)
        exited = watch_exit(proc)
        await wait_any((exited, gone), req.timeout_s)
        timed_out = not exited.done()
        if timed_out:
            killpg(proc.pid, signal.SIGKILL)
        code = os.waitstatus_to_exitcode(await exited)
        # Done when bash exits: background jobs may hold the pipes open, so take what is there,
        # then keep reading them to no one, so that a job writing later gets no SIGPIPE.
        out.finish(pump.drain)
        pump.sink = None
        pump.resume()  # in case backpressure had paused it
        self.prune_groups()
        killed = code in (-signal.SIGKILL, 128 + signal.SIGKILL)  # bash itself, or its last command
        oom = killed and self.ooms() > ooms
        out.exit(p.Exit(code, ms_since(start), out.truncated, timed_out, oom))

    def prune_groups(self) -> None:
        for pgid in list(self.groups):
            with contextlib.suppress(PermissionError):
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    self.groups.discard(pgid)

    async def run_python(
        self, req: p.Exec, cwd: str, env: dict[str, str], conn: Conn, gone: asyncio.Future[None]
    ) -> None:
        ctx = self.contexts.setdefault(req.context, Context())
        async with ctx.lock:
            start, ooms = time.monotonic(), self.ooms()
            lost = ctx.proc is not None and ctx.exited.done()  # it died while idle
            if ctx.proc is None or lost:
                await ctx.close()
                ctx.start(cwd, env)
            out = ctx.pump.sink = Sink(conn, req.output_limit, ctx.pump)
            ctx.busy = True
            try:
                code, timed_out, died = await ctx.run(req, cwd, gone)
                out.finish(ctx.pump.drain)
            finally:
                ctx.busy = False
                ctx.pump.sink = None
                ctx.pump.resume()
            if died:
                await ctx.close()
        oom = died and self.ooms() > ooms
        out.exit(p.Exit(code, ms_since(start), out.truncated, timed_out, oom, died or lost))

    async def interrupt(self, req: p.Interrupt, conn: Conn) -> None:
        ctx = self.contexts.get(req.context)
        if ctx is not None and ctx.busy:
            ctx.signal(signal.SIGINT)
        conn.write(encode(p.Ok()))

    async def close_context(self, req: p.CloseContext, conn: Conn) -> None:
        ctx = self.contexts.get(req.context)
        if ctx is not None:
            ctx.signal(signal.SIGKILL)  # a running exec sees it die and reports context_reset
            async with ctx.lock:
                await ctx.close()
        conn.write(encode(p.Ok()))

    def cwd(self, cwd: str) -> str:
        """A real directory in the workspace or /tmp; /workspace/... means the workspace."""
        if not isinstance(cwd, str) or "\0" in cwd:
            raise Fail("invalid_path", "cwd must be a path without NUL bytes")
        if cwd == p.WORKSPACE and os.path.isdir(self.root):
            return self.root
        if cwd.startswith(p.WORKSPACE + "/"):
            cwd = self.root + cwd[len(p.WORKSPACE) :]
        real = os.path.realpath(os.path.join(self.root, cwd))
        if not (inside(real, self.root) or inside(real, self.tmp)):
            raise Fail("invalid_path", f"cwd must be inside the workspace or /tmp: {cwd}")
        if not os.path.isdir(real):
            raise Fail("not_found", f"cwd is not a directory: {cwd}")
        return real

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
            for k, v in extra.items()
        ):
            raise Fail("invalid_request", "env must map names to strings, without '=' or NUL")
        return {**self.base_env, **extra}

    # --- files ---

    def locate(self, rel: str) -> tuple[str, str]:
        """(real parent directory, final name) of a workspace path; the name is "" for the root.
        The final component is not followed, so a link is seen as a link."""
        parts = path_parts(rel)
        if not parts:
            return self.root, ""
        parent = os.path.realpath(os.path.join(self.root, *parts[:-1]))
        if not inside(parent, self.root):
            raise Fail("invalid_path", f"path leaves the workspace: {rel}")
        return parent, parts[-1]

    def follow(self, rel: str) -> str:
        """The real path of a workspace path, links followed; it must stay in the workspace."""
        real = os.path.realpath(os.path.join(self.root, *path_parts(rel)))
        if not inside(real, self.root):
            raise Fail("invalid_path", f"path leaves the workspace: {rel}")
        return real

    async def list(self, req: p.ListDir, conn: Conn) -> None:
        parent, name = self.locate(req.path)
        path = os.path.join(parent, name) if name else parent
        rel = "/".join(path_parts(req.path))
        with os_errors(req.path):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                prefix = f"{rel}/" if rel else ""
                with os.scandir(path) as it:
                    entries = [
                        entry(e.name, prefix + e.name, e.stat(follow_symlinks=False)) for e in it
                    ]
                entries.sort(key=lambda e: e.name)
            else:
                entries = [entry(name, rel, st)]
        conn.write(p.Entries(entries).encode())

    async def read(self, req: p.Read, conn: Conn) -> None:
        path = self.follow(req.path)
        with os_errors(req.path):
            fd = open_regular(path, req.path, os.O_RDONLY)
        size = 0
        try:
            while chunk := os.read(fd, p.CHUNK_BYTES):
                size += len(chunk)
                conn.write(encode(p.Chunk(base64.b64encode(chunk).decode())))
                await conn.drain()
        finally:
            os.close(fd)
        conn.write(encode(p.End(size)))

    async def write(self, req: p.Write, conn: Conn) -> None:
        parent, name = self.locate(req.path)
        if not name:
            raise Fail("invalid_path", "the workspace root is not a file")
        target = os.path.join(parent, name)
        tmp = os.path.join(parent, f".{name}.{os.urandom(4).hex()}~")
        with os_errors(req.path):
            if req.make_parents:
                os.makedirs(parent, exist_ok=True)
            mode = writable_mode(target, req.path)
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
            )
        try:
            with os_errors(req.path):
                size = await receive(conn, fd)
                os.close(fd)
                fd = -1
                os.replace(tmp, target)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        conn.write(encode(p.End(size)))

    async def delete(self, req: p.Delete, conn: Conn) -> None:
        parent, name = self.locate(req.path)
        if not name:
            raise Fail("invalid_path", "refusing to delete the workspace root")
        path = os.path.join(parent, name)
        with os_errors(req.path):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)
            elif req.recursive:
                shutil.rmtree(path)
            else:
                os.rmdir(path)
        conn.write(encode(p.Ok()))


# --- helpers -----------------------------------------------------------------------------------


def inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def path_parts(rel: str) -> list[str]:
    if not isinstance(rel, str) or "\0" in rel or rel.startswith("/"):
        raise Fail("invalid_path", f"not a path relative to the workspace: {rel!r}")
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Fail("invalid_path", f"'..' is not allowed in paths: {rel!r}")
    return parts


def entry(name: str, rel: str, st: os.stat_result) -> p.Entry:
    mode = st.st_mode
    kind: p.EntryType = (
        "file"
        if stat.S_ISREG(mode)
        else "dir"
        if stat.S_ISDIR(mode)
        else "link"
        if stat.S_ISLNK(mode)
        else "other"
    )
    return p.Entry(name, rel, kind, st.st_size, st.st_mtime)


def check_type(mode: int, rel: str) -> None:
    if stat.S_ISDIR(mode):
        raise Fail("invalid_request", f"is a directory, not a file: {rel}")
    if not stat.S_ISREG(mode):
        raise Fail("unsupported_file_type", f"not a regular file: {rel}")


def open_regular(path: str, rel: str, flags: int) -> int:
    """Open a regular file, never following a link and never blocking on a FIFO or device."""
    check_type(os.lstat(path).st_mode, rel)
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        check_type(os.fstat(fd).st_mode, rel)
    except BaseException:
        os.close(fd)
        raise
    return fd


def writable_mode(target: str, rel: str) -> int:
    """The mode of the file a write replaces (0o644 for a new one); links and such are refused."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return 0o644
    check_type(st.st_mode, rel)
    return stat.S_IMODE(st.st_mode)


async def receive(conn: Conn, fd: int) -> int:
    """Write the Chunk frames up to End into fd; the byte count."""
    size = 0
    while True:
        line = await conn.readline()
        if not line:
            raise ConnectionResetError("the client hung up")
        msg = p.decode(line)
        if isinstance(msg, p.End):
            if msg.size != size:
                raise Fail("invalid_request", f"got {size} bytes, the client said {msg.size}")
            return size
        if not isinstance(msg, p.Chunk):
            raise Fail("invalid_request", f"expected chunk or end, got {msg.kind}")
        try:
            view = memoryview(base64.b64decode(msg.data, validate=True))
        except binascii.Error as exc:
            raise Fail("invalid_request", f"bad base64 chunk: {exc}") from exc
        size += len(view)
        while view:
            view = view[os.write(fd, view) :]


@contextlib.contextmanager
def os_errors(rel: str) -> Any:
    """Turn OS errors into the request errors the client understands."""
    try:
        yield
    except OSError as exc:
        code = exc.errno
        if code in (errno.ENOENT, errno.ENOTDIR):
            raise Fail("not_found", f"no such file or directory: {rel}") from exc
        if code in (errno.ENOSPC, errno.EDQUOT):
            raise Fail("workspace_full", f"no space left in the workspace writing {rel}") from exc
        if code == errno.ELOOP:
            raise Fail("unsupported_file_type", f"is a symbolic link: {rel}") from exc
        if code == errno.ENOTEMPTY:
            raise Fail(
                "invalid_request", f"directory not empty (delete recursively): {rel}"
            ) from exc
        if code in (errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS):
            raise Fail("invalid_request", f"{exc.strerror}: {rel}") from exc
        raise


def check_exec(req: p.Exec) -> None:
    if req.language not in ("python", "shell"):
        raise Fail("invalid_request", f"unknown language {req.language!r}: use python or shell")
    if not isinstance(req.code, str) or not isinstance(req.context, str):
        raise Fail("invalid_request", "code and context must be strings")
    if not isinstance(req.timeout_s, int | float) or not 0 < req.timeout_s < math.inf:
        raise Fail("invalid_request", "timeout_s must be a positive number")
    if not isinstance(req.output_limit, int) or req.output_limit < 0:
        raise Fail("invalid_request", "output_limit must be a count of bytes")


def error_of(exc: Exception, msg: p.Message | None) -> p.Error:
    if isinstance(exc, Fail):
        return p.Error(exc.code, str(exc))
    if isinstance(exc, p.ProtocolError):
        return p.Error("invalid_request", str(exc))
    log.exception("request failed: %r", msg)
    return p.Error("internal", f"executor error: {type(exc).__name__}: {exc}")


async def answer_error(conn: Conn, error: p.Error, msg: p.Message | None) -> None:
    """Send the error. After a failed write, swallow the client's frames up to End (or EOF):
    the client sends them all before it reads the answer."""
    conn.write(encode(error))
    if isinstance(msg, p.Write):
        with contextlib.suppress(ConnectionError, Fail):
            await conn.drain()
            while (line := await conn.readline()) and not line.endswith(b'"kind":"end"}\n'):
                pass


def ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)


async def serve(socket_path: str, workspace: str) -> None:
    executor = Executor(workspace)
    listener = executor.listen(socket_path)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        executor.loop.add_signal_handler(sig, stop.set)
    log.info("executor %d listening on %s, workspace %s", os.getpid(), socket_path, executor.root)
    await stop.wait()
    executor.loop.remove_reader(listener.fileno())
    listener.close()
    executor.shutdown()
    with contextlib.suppress(OSError):
        os.unlink(socket_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="executor.server", description=__doc__)
    parser.add_argument("--socket", default=os.path.join(p.CONTROL_DIR, p.SOCKET_NAME))
    parser.add_argument("--workspace", default=p.WORKSPACE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s executor %(levelname)s %(message)s")
    asyncio.run(serve(args.socket, args.workspace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
