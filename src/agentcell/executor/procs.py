"""Processes the executor server starts: signals to their groups, reaping by pid, the memory
cgroup's OOM kill count, and shell commands in sessions of their own. Standard library only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from .pipes import Pump

OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
HELPERS: set[int] = set()  # the server's own helpers running (zipper, unpacker): never swept


def raise_oom_score() -> None:
    """Make the OOM killer prefer this process over the server (raising it needs no privilege)."""
    with contextlib.suppress(OSError):
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"500")
        finally:
            os.close(fd)


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


def watch_exit(pid: int, popen: subprocess.Popen[bytes] | None = None) -> asyncio.Future[int]:
    """A future of the wait status of our own child, reaped by pid (never waitpid(-1)).
    A Popen is told its return code, so that it never reaps the pid itself."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()

    def reap(status: int) -> None:
        if popen is not None:
            popen.returncode = os.waitstatus_to_exitcode(status)
        if not fut.done():
            fut.set_result(status)

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # no pidfd (old kernel, gVisor, strict seccomp): a thread waits instead
        # A thread of its own, not the loop's executor: its few threads would all be taken by
        # long-lived kernels and holders, and the next child's exit would never be seen.
        threading.Thread(target=_wait_in_thread, args=(loop, pid, reap), daemon=True).start()
        return fut

    def ready() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            reap(os.waitpid(pid, 0)[1])
        except ChildProcessError:
            reap(signal.SIGKILL)

    loop.add_reader(pidfd, ready)
    return fut


def _wait_in_thread(loop: asyncio.AbstractEventLoop, pid: int, reap: Callable[[int], None]) -> None:
    try:
        status = os.waitpid(pid, 0)[1]
    except ChildProcessError:
        status = signal.SIGKILL
    with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
        loop.call_soon_threadsafe(reap, status)


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
