"""Python contexts, as the server sees them: one kernel process each (a fork of the server, see
zygote.py), started on demand, one exec at a time, and at most ``limit`` alive at once: the
least recently used idle one is closed to make room, never a busy one. Standard library only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time

from . import protocol as p
from .conn import Fail
from .kernel import TIMEOUT
from .pipes import Pump
from .procs import killpg, wait_any, watch_exit
from .tree import alive, children, kill_tree, state, wait_dead
from .zygote import fork_kernel

log = logging.getLogger(__name__)

KILL_GRACE_S = 1.0
KILL_PASSES = 10
MAX_CONTEXTS = 8  # live python contexts per cell: each holds its own memory


class Context:
    """One python kernel process, started on demand; one exec at a time."""

    pump: Pump
    exited: asyncio.Future[int]
    control: socket.socket

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.pid: int | None = None
        self.busy = False  # an exec runs: interrupts go through
        self.users = 0  # execs running or waiting: not to be closed for room
        self.used = 0.0  # when it last ran (monotonic)
        self.evicted = False  # closed to make room: the next exec reports context_reset
        self.replies = bytearray()
        self.reply: asyncio.Future[bytes] | None = None
        self.kept: set[int] = set()  # children that background execs kept running

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def start(self, cwd: str, env: dict[str, str]) -> None:
        self.pid, out_r, err_r, self.control = fork_kernel(cwd, env)
        self.kept = set()
        self.exited = watch_exit(self.pid)
        self.pump = Pump({"stdout": out_r, "stderr": err_r})
        self.replies.clear()
        self.control.setblocking(False)
        self.loop.add_reader(self.control.fileno(), self.on_control)
        self.used = time.monotonic()

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
        if self.pid is not None and not self.exited.done():
            killpg(self.pid, sig)

    async def close(self) -> None:
        """Kill the kernel and everything in its process group."""
        if self.pid is not None:
            # Its whole tree, and the whole group even when the kernel itself is gone (what it
            # started lives on under the server then: the server sweeps those).
            if not self.exited.done():
                kill_tree(self.pid, include_root=True)
            killpg(self.pid, signal.SIGKILL)
            await self.exited
            self.pump.close()
            self.loop.remove_reader(self.control.fileno())
            self.control.close()
            self.pid = None

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
            with contextlib.suppress(OSError):  # the note first: the kernel looks for it on SIGINT
                self.control.send(TIMEOUT)
            self.signal(signal.SIGINT)
            await wait_any((reply, self.exited), KILL_GRACE_S)
            if not (reply.done() or self.exited.done()):
                self.signal(signal.SIGKILL)
        line = reply.result() if reply.done() else b""
        self.reply = None
        self.used = time.monotonic()
        if line:
            return int(json.loads(line)["exit_code"]), timed_out, False
        self.signal(signal.SIGKILL)  # dead, or it closed its control socket: no use any more
        return os.waitstatus_to_exitcode(await self.exited), timed_out, True

    def leftovers(self) -> list[int]:
        """The kernel's children that no background exec kept (cheap: one /proc read)."""
        self.kept.intersection_update(kids := children(self.pid) if self.pid else [])
        return [pid for pid in kids if pid not in self.kept]

    async def clean(self, background: bool, *, dirty: bool = False) -> None:
        """At the end of an exec: keep what it left running, or kill it all and have the kernel
        reap it. The kernel is idle (its reply came) and alive. An exec that ended cleanly keeps
        the status of the children that finished on their own (the code may wait for them in a
        later exec); a dirty one (timed out, or something was still running) has every dead
        child reaped: a fork bomb's forks that exited on their own would hold pids for good."""
        if background:
            self.kept.update(children(self.pid) if self.pid else [])
        elif self.pid is not None and (left := self.leftovers()):
            dirty = dirty or any(state(pid) != "Z" for pid in left)
            await self.kill(self.pid, self.kept, everything=dirty)

    async def kill(
        self, root: int, keep: set[int], *, include_root: bool = False, everything: bool = False
    ) -> None:
        """Kill a tree under the kernel and have the kernel reap what died (see clean)."""
        assert self.pid is not None
        # A child the code started itself may be waited for there: its status is the code's.
        spare = [root] if include_root and root in children(self.pid) else []
        reap = json.dumps({"reap": True, "spare": spare, "everything": everything}).encode()
        for _ in range(KILL_PASSES):  # a pass can miss a process being reparented (tree.py)
            kill_tree(root, keep, include_root=include_root)
            await wait_dead(self.pid, keep)
            self.reply = reply = self.loop.create_future()
            with contextlib.suppress(OSError):
                await self.loop.sock_sendall(self.control, reap + b"\n")
            await wait_any((reply, self.exited), KILL_GRACE_S)
            self.reply = None
            if self.exited.done() or not alive(root, keep, include_root):
                return
        log.warning("python context %s: processes survived %d kill passes", self.pid, KILL_PASSES)


class Contexts:
    """The cell's python contexts by name, at most ``limit`` of them alive."""

    def __init__(self, limit: int = MAX_CONTEXTS) -> None:
        self.limit = limit
        self.by_name: dict[str, Context] = {}

    def get(self, name: str) -> Context:
        ctx = self.by_name.get(name)
        if ctx is None:
            ctx = self.by_name[name] = Context()
        return ctx

    async def make_room(self, keep: Context) -> None:
        """Close the least recently used idle contexts until one more may start. The caller
        starts it right away, with no await in between: the count then stays within the limit."""
        while True:
            alive = [c for c in self.by_name.values() if c.alive and c is not keep]
            if len(alive) < self.limit:
                return
            idle = [c for c in alive if c.users == 0]
            if not idle:
                raise Fail(
                    "invalid_request",
                    f"all {self.limit} python contexts of this cell are busy: wait for one to "
                    "finish, or interrupt or close one",
                )
            victim = min(idle, key=lambda c: c.used)
            async with victim.lock:
                if victim.alive:
                    victim.evicted = True
                    await victim.close()

    async def close(self, name: str) -> None:
        ctx = self.by_name.get(name)
        if ctx is None:
            return
        ctx.signal(signal.SIGKILL)  # a running exec sees it die and reports context_reset
        async with ctx.lock:
            await ctx.close()
            ctx.evicted = False
        if ctx.users == 0 and self.by_name.get(name) is ctx:
            del self.by_name[name]

    def kill_all(self) -> None:
        for ctx in self.by_name.values():
            if ctx.pid is not None:
                killpg(ctx.pid, signal.SIGKILL)
