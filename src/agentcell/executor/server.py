"""The executor server that runs inside a cell. Standard library only; it imports nothing but its
own package's modules (relative imports), because the image copies this package on its own.

One request per connection on a Unix socket (see protocol.py), dispatched here. Python code runs
in named, long-lived kernel processes forked from this server (contexts.py, zygote.py, kernel.py);
shell code runs in a fresh ``bash -c`` under a holder (holder.py). Each runs in its own session,
so an interrupt reaches its whole process group; the server, the kernels and the holders are
subreapers, so at an exec's end or timeout its whole process tree is found and killed (tree.py),
unless the exec asked to keep it (``background``): kept processes are listed and killed by
request. Output goes through pipes.py, file operations through files.py (archives unpacked
into a folder through extract.py), jobs (code run detached from any connection, with a log in
the cell) through jobs.py, the egress forwarder (the cell's loopback relayed to the host)
through egress.py, the host's connections to the cell's ports through ports.py, interactive
shells on pseudo-terminals through terminals.py, the live desktop (X and VNC) through
desktop.py.
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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from . import protocol as p
from .cellenv import read, thread_env
from .conn import Conn, Fail
from .contexts import KILL_GRACE_S, MAX_CONTEXTS, Context, Contexts
from .desktop import Desktop
from .egress import Egress, egress_env
from .extract import Extractor
from .files import Files, inside
from .holder import fork_holder, read_status
from .jobs import Jobs
from .pipes import Pump, Sink
from .ports import Ports
from .procs import HELPERS, OomCounter, wait_any, watch_exit
from .terminals import Terminals
from .tree import (
    children,
    command_of,
    descendants,
    kill_session,
    kill_tree,
    ppid_of,
    set_subreaper,
    state,
    wait_dead,
)

log = logging.getLogger(__name__)

Handler = Callable[[Any, Conn], Awaitable[None]]
FORK_ATTEMPTS = 8  # about 1.4 s of sweeping at the pids limit before the cell is stuck
SWEEP_ROUNDS = 20
T = TypeVar("T")


class Executor:
    def __init__(
        self,
        workspace: str,
        max_contexts: int = MAX_CONTEXTS,
        *,
        subreaper: bool = True,
        egress_port: int = p.EGRESS_PORT,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.subreaper = subreaper  # False: orphans go to PID 1 (gVisor), see kill_shell
        self.root = os.path.realpath(workspace)
        self.tmp = os.path.realpath("/tmp")
        self.contexts = Contexts(max_contexts)
        self.files = Files(self.root)
        self.holders: set[int] = set()  # of shell execs running, or kept by background ones
        self.kept: set[int] = set()  # holders of background execs, while they hold processes
        self.tasks: set[asyncio.Task[None]] = set()
        self.ooms = OomCounter()
        self.shell = shutil.which("bash") or "/bin/sh"
        self.base_env = {
            "PATH": f"{p.USER_BASE}/bin:"
            + (os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"),
            "HOME": "/tmp",
            "USER": os.environ.get("USER", "cell"),  # the cell's uid has no passwd entry
            "LOGNAME": os.environ.get("LOGNAME", "cell"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
            "TERM": "dumb",
            **thread_env(),
            **egress_env(egress_port),
        }
        self.handlers: dict[type[p.Message], Handler] = {
            p.Ping: self.ping,
            p.Exec: self.exec,
            p.Interrupt: self.interrupt,
            p.CloseContext: self.close_context,
            p.ListProcesses: self.list_processes,
            p.KillProcess: self.kill_process,
            p.ListDir: self.files.list,
            p.Read: self.files.read,
            p.Zip: self.files.zip,
            p.Write: self.files.write,
            p.Delete: self.files.delete,
        }
        self.jobs = Jobs(self)
        self.handlers.update(self.jobs.handlers())
        self.egress = Egress(egress_port)
        self.handlers.update(self.egress.handlers())
        self.handlers.update(Ports().handlers())
        self.handlers.update(Extractor(self.files).handlers())
        self.terminals = Terminals(self)
        self.handlers.update(self.terminals.handlers())
        self.handlers.update(Desktop(self).handlers())

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
            self.spawn(self.handle(Conn(sock)))

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
        for holder in self.holders:
            kill_tree(holder, include_root=True)
        self.jobs.shutdown()
        self.egress.shutdown()
        self.terminals.shutdown()

    async def ping(self, _msg: p.Ping, conn: Conn) -> None:
        conn.write(p.Pong(uid=os.getuid(), pid=os.getpid()).encode())

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
        argv = [self.shell, "-c", req.code]
        holder, out_r, err_r, status_r = await self.fork(lambda: fork_holder(argv, cwd, env))
        self.holders.add(holder)
        held = watch_exit(holder)
        held.add_done_callback(lambda _: self.forget(holder))
        pump = Pump({"stdout": out_r, "stderr": err_r})
        pump.sink = out = Sink(conn, req.output_limit, pump)
        status = read_status(status_r)
        await wait_any((status, gone), req.timeout_s)
        timed_out = not status.done()
        if not status.done():  # timed out, or the client is gone: everything goes
            self.kill_shell(holder)
        if (status_ := await status) is None:
            pump.sink = None
            raise stuck()
        code = os.waitstatus_to_exitcode(status_)
        # Done when bash exits: kept jobs may hold the pipes open, so take what is there, then
        # keep reading them to no one, so that a job writing later gets no SIGPIPE.
        out.finish(pump.drain)
        pump.sink = None
        pump.resume()  # in case backpressure had paused it
        keep = req.background and not timed_out
        if keep and children(holder):
            self.kept.add(holder)
        else:  # a background exec's jobs that went to PID 1 (see kill_shell) live on
            self.kill_shell(holder, session=not keep)
            await wait_any((held,), KILL_GRACE_S)  # it reaps what was killed, then exits
            if not held.done():
                self.spawn(self.finish_off(holder, held))
        killed = code in (-signal.SIGKILL, 128 + signal.SIGKILL)  # bash itself, or its last command
        oom = killed and self.ooms() > ooms
        if timed_out:
            code = p.TIMED_OUT
            out.note(f"agentcell: timed out after {req.timeout_s:g} s")
        out.exit(p.Exit(code, ms_since(start), out.truncated, timed_out, oom))

    def kill_shell(self, holder: int, *, session: bool = True) -> None:
        """Kill what a shell exec started: the holder's tree, and where there is no subreaper
        what left it for PID 1 while staying in the holder's session (jobs bash did not wait
        for, double forks, nohup); a process that called setsid then escapes."""
        kill_tree(holder)
        if session and not self.subreaper:
            kill_session(holder)

    async def finish_off(self, holder: int, held: asyncio.Future[int]) -> None:
        """Kill what is under the holder until it exits (it does once it has no children left).
        A process being reparented while kill_tree reads /proc can be missed by it (the
        children lists are exact only for stopped trees), and a missed fork bomb bombs on."""
        while not held.done():
            kill_tree(holder)
            await wait_any((held,), KILL_GRACE_S)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget(self, holder: int) -> None:
        self.holders.discard(holder)
        self.kept.discard(holder)

    async def fork(self, start: Callable[[], T]) -> T:
        """Fork through start; at the pids limit, sweep leftovers (ours, and those idle
        contexts still hold while their kernels reap) and try again for a few seconds."""
        for attempt in range(FORK_ATTEMPTS):
            try:
                return start()
            except BlockingIOError:
                await self.sweep()
                await self.clean_idle_contexts()
                await asyncio.sleep(0.05 * attempt)
        raise stuck()

    async def clean_idle_contexts(self) -> None:
        for ctx in list(self.contexts.by_name.values()):
            if ctx.alive and not ctx.lock.locked() and not ctx.exited.done() and ctx.leftovers():
                async with ctx.lock:
                    if ctx.alive and not ctx.exited.done():
                        await ctx.clean(False, dirty=True)  # at the pids limit

    async def sweep(self) -> None:
        """Kill the server's children that no one owns: what the code of a python context that
        died had started (a kernel's orphans come to us when it dies); reap them."""
        known = self.holders | HELPERS | {c.pid for c in self.contexts.by_name.values() if c.pid}
        me = os.getpid()
        for _ in range(SWEEP_ROUNDS):  # a fork bomb's dead come to us in waves
            stray = [pid for pid in children(me) if pid not in known]
            if not stray:
                return
            for pid in stray:
                kill_tree(pid, include_root=True)
            await wait_dead(me, known)
            for pid in children(me):
                if pid not in known:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)

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
                    await self.sweep()
                reset = lost or ctx.evicted
                if not ctx.alive:
                    await self.contexts.make_room(ctx)
                    await self.fork(lambda: ctx.start(cwd, env))
                    ctx.evicted = False
                out = ctx.pump.sink = Sink(conn, req.output_limit, ctx.pump)
                ctx.busy = True
                try:
                    code, timed_out, died = await ctx.run(req, cwd, gone)
                    if not died:
                        await ctx.clean(req.background and not timed_out, dirty=timed_out)
                    out.finish(ctx.pump.drain)
                finally:
                    ctx.busy = False
                    ctx.pump.sink = None
                    ctx.pump.resume()
                if died:
                    await ctx.close()
                    await self.sweep()
        finally:
            ctx.users -= 1
        oom = died and self.ooms() > ooms
        if timed_out:
            code = p.TIMED_OUT
            lost_it = f"; python context {req.context!r} did not stop on interrupt and was reset"
            out.note(f"agentcell: timed out after {req.timeout_s:g} s{lost_it if died else ''}")
        out.exit(p.Exit(code, ms_since(start), out.truncated, timed_out, oom, died or reset))

    async def interrupt(self, req: p.Interrupt, conn: Conn) -> None:
        ctx = self.contexts.by_name.get(req.context)
        if ctx is not None and ctx.busy:
            ctx.signal(signal.SIGINT)
        conn.write(p.Ok().encode())

    async def close_context(self, req: p.CloseContext, conn: Conn) -> None:
        await self.contexts.close(req.context)
        await self.sweep()
        conn.write(p.Ok().encode())

    def kept_processes(self) -> dict[int, tuple[p.Process, Context | None]]:
        """What background execs kept running, by pid, with the context that holds it."""
        found: dict[int, tuple[p.Process, Context | None]] = {}
        roots: list[tuple[list[int], str, Context | None]] = [
            (children(h), "shell", None) for h in self.kept
        ]
        for name, context in self.contexts.by_name.items():
            if context.pid is not None and context.kept and not context.busy:
                roots.append((sorted(context.kept), f"python:{name}", context))
        for tops, origin, ctx in roots:
            for top in tops:
                for pid in (top, *descendants(top)):
                    if state(pid) in ("Z", ""):  # dead, waiting for its parent to reap it
                        continue
                    proc = p.Process(pid, ppid_of(pid), command_of(pid), origin)
                    found[pid] = (proc, ctx)
        return found

    async def list_processes(self, _req: p.ListProcesses, conn: Conn) -> None:
        procs = [proc for proc, _ in self.kept_processes().values() if proc.ppid]
        conn.write(p.Processes(sorted(procs, key=lambda proc: proc.pid)).encode())

    async def kill_process(self, req: p.KillProcess, conn: Conn) -> None:
        kept = self.kept_processes().get(req.pid) if isinstance(req.pid, int) else None
        if kept is None:
            raise Fail("not_found", f"no process {req.pid} was kept by a background exec")
        _, ctx = kept
        if ctx is None or ctx.pid is None:
            kill_tree(req.pid, include_root=True)
        else:
            async with ctx.lock:
                await ctx.kill(req.pid, set(), include_root=True)
        conn.write(p.Ok().encode())

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
    """Send the error. After a failed write or extract, swallow the client's frames up to End
    (or EOF): the client sends them all before it reads the answer."""
    conn.write(error.encode())
    if isinstance(msg, p.Write | p.Extract):
        with contextlib.suppress(ConnectionError, Fail):
            await conn.drain()
            while (line := await conn.readline()) and not line.endswith(b'"kind":"end"}\n'):
                pass


def stuck() -> Fail:
    return Fail(
        "cell_stuck",
        f"this cell is at its process limit ({pids_max()} processes): nothing new can start, "
        "and no leftover could be killed to make room",
    )


def pids_max() -> str:
    for path in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):  # v2, v1
        with contextlib.suppress(OSError):
            return read(path)
    return "unknown"


def ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)


async def serve(
    socket_path: str, workspace: str, warm: bool, max_contexts: int, egress_port: int
) -> None:
    # What is loaded by now lives as long as the server: the collector need not walk it, and
    # by walking it would write to pages that the python contexts (forks) share with us.
    gc.freeze()
    subreaper = set_subreaper()  # orphans come to us, not to PID 1: see tree.py
    if not subreaper:
        log.warning("no child subreaper (prctl refused): what calls setsid may outlive its exec")
    executor = Executor(workspace, max_contexts, subreaper=subreaper, egress_port=egress_port)
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
    parser.add_argument(
        "--egress-port",
        type=int,
        default=p.EGRESS_PORT,
        help="the egress forwarder's port on 127.0.0.1, while the host asks for it (tests on "
        "the host pick a free one)",
    )
    args = parser.parse_args(argv)
    if args.max_contexts < 1:
        parser.error("--max-contexts must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s executor %(levelname)s %(message)s")
    asyncio.run(serve(args.socket, args.workspace, args.warm, args.max_contexts, args.egress_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
