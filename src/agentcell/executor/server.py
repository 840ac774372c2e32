"""The executor server that runs inside a cell. Standard library only; it imports nothing but its
own package's modules (relative imports), because the image copies this package on its own.

One request per connection on a Unix socket (see protocol.py), dispatched here. Python code runs
in named, long-lived kernel processes forked from this server (contexts.py, zygote.py, kernel.py);
shell code runs in a fresh ``bash -c``. Each runs in its own session, so a timeout or an interrupt
reaches its whole process group. Output goes through pipes.py, file operations through files.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as p
from .conn import Conn, Fail, encode
from .contexts import MAX_CONTEXTS, Contexts
from .files import Files, inside
from .pipes import Sink
from .procs import OomCounter, killpg, raise_oom_score, spawn, wait_any, watch_exit

log = logging.getLogger(__name__)

Handler = Callable[[Any, Conn], Awaitable[None]]


class Executor:
    def __init__(self, workspace: str, max_contexts: int = MAX_CONTEXTS) -> None:
        self.loop = asyncio.get_running_loop()
        self.root = os.path.realpath(workspace)
        self.tmp = os.path.realpath("/tmp")
        self.contexts = Contexts(max_contexts)
        self.files = Files(self.root)
        self.groups: set[int] = set()  # process groups of shells, killed at shutdown
        self.tasks: set[asyncio.Task[None]] = set()
        self.ooms = OomCounter()
        self.shell = shutil.which("bash") or "/bin/sh"
        self.base_env = {
            "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "USER": os.environ.get("USER", "cell"),  # the cell's uid has no passwd entry
            "LOGNAME": os.environ.get("LOGNAME", "cell"),
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
            p.ListDir: self.files.list,
            p.Read: self.files.read,
            p.Zip: self.files.zip,
            p.Write: self.files.write,
            p.Delete: self.files.delete,
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

    def warm(self) -> None:
        """Start the default python context now, so that the first exec finds it running."""
        self.contexts.get("default").start(self.root, self.base_env)

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
        self.contexts.kill_all()
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
        exited = watch_exit(proc.pid, proc)
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
        ctx = self.contexts.get(req.context)
        ctx.users += 1
        try:
            async with ctx.lock:
                start, ooms = time.monotonic(), self.ooms()
                lost = ctx.alive and ctx.exited.done()  # it died while idle
                if lost:
                    await ctx.close()
                reset = lost or ctx.evicted
                if not ctx.alive:
                    await self.contexts.make_room(ctx)
                    ctx.start(cwd, env)  # right after make_room: no await in between
                    ctx.evicted = False
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
        finally:
            ctx.users -= 1
        oom = died and self.ooms() > ooms
        out.exit(p.Exit(code, ms_since(start), out.truncated, timed_out, oom, died or reset))

    async def interrupt(self, req: p.Interrupt, conn: Conn) -> None:
        ctx = self.contexts.by_name.get(req.context)
        if ctx is not None and ctx.busy:
            ctx.signal(signal.SIGINT)
        conn.write(encode(p.Ok()))

    async def close_context(self, req: p.CloseContext, conn: Conn) -> None:
        await self.contexts.close(req.context)
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


async def serve(socket_path: str, workspace: str, warm: bool, max_contexts: int) -> None:
    # What is loaded by now lives as long as the server: the collector need not walk it, and
    # by walking it would write to pages that the python contexts (forks) share with us.
    gc.freeze()
    executor = Executor(workspace, max_contexts)
    listener = executor.listen(socket_path)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        executor.loop.add_signal_handler(sig, stop.set)
    if warm:
        executor.warm()
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
    parser.add_argument(
        "--warm", action="store_true", help="start the default python context at once"
    )
    parser.add_argument(
        "--max-contexts",
        type=int,
        default=MAX_CONTEXTS,
        help="python contexts alive at once; the least recently used idle one makes room",
    )
    args = parser.parse_args(argv)
    if args.max_contexts < 1:
        parser.error("--max-contexts must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s executor %(levelname)s %(message)s")
    asyncio.run(serve(args.socket, args.workspace, args.warm, args.max_contexts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
