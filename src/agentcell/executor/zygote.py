"""Python contexts are forks of the executor server: the server has imported everything a kernel
needs, so a fork starts in a millisecond or two and shares those pages copy-on-write, where a
fresh ``python3`` pays tens of milliseconds and megabytes of its own.

The child is the server's copy, event loop and all, so it is made a clean process before it
runs anything: signal handlers back to their defaults (the loop's wakeup fd is the server's),
a session of its own, only the pipes and its control socket open, a high OOM score, its own
environment, fresh standard streams. It never returns into the server's code: whatever happens,
it ends with ``os._exit``. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Iterable
from typing import NoReturn

from . import kernel  # with all it imports: every context shares those pages
from .procs import raise_oom_score
from .tree import set_subreaper

FIRST_FREE_FD = kernel.CONTROL_FD + 1
ALL_SIGNALS = signal.valid_signals()


def fork_kernel(cwd: str, env: dict[str, str]) -> tuple[int, int, int, socket.socket]:
    """Start a kernel: (pid, its stdout and stderr read ends, its control socket).
    The caller reaps it."""
    control, child_end = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ours, theirs = (control, out_r, err_r), (child_end, out_w, err_w)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ALL_SIGNALS)  # none in the child's setup
    try:
        pid = os.fork()
        if pid == 0:  # the child: it never leaves become_kernel
            become_kernel(cwd, env, child_end.fileno(), out_w, err_w, mask)
    except BaseException:
        control.close()
        for fd in ours[1:]:
            os.close(fd)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child_end.close()
        for fd in theirs[1:]:
            os.close(fd)
    return pid, out_r, err_r, control


def become_kernel(
    cwd: str, env: dict[str, str], control: int, out: int, err: int, mask: Iterable[int]
) -> NoReturn:
    """In the child, right after the fork: set up, serve, exit."""
    code = 1
    try:
        # The server's objects are never collected here: a finalizer would close an fd by a
        # number that is someone else's by then, or log to the server's stderr.
        gc.freeze()
        reset_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.setsid()  # a process group of its own: interrupts and kills reach all it starts
        set_subreaper()  # orphans of what the code starts stay ours: see tree.py
        place_fds(os.open(os.devnull, os.O_RDONLY), out, err, control)
        raise_oom_score()
        try:
            os.chdir(cwd)
        except OSError:
            cwd = ""  # gone meanwhile: the first run tries again, and says why it cannot
        os.environ.clear()
        os.environ.update(env)
        # random reseeds itself in a forked child (random.py registers an at-fork hook); the
        # str hash seed stays the server's: dict and set orders match across the cell's contexts.
        forget_the_server()
        kernel.serve(cwd)
        code = 0
    except BaseException:  # noqa: BLE001 - nothing may return into the server's code
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode(errors="replace"))
    finally:
        os._exit(code)


def reset_signals() -> None:
    """Python handlers (the server's) back to the default; ignored signals stay ignored, as
    they are in a fresh interpreter (SIGPIPE, SIGXFSZ). SIGINT is ignored until the kernel
    takes it. The loop's wakeup fd is the server's: a signal here must not write to it."""
    signal.set_wakeup_fd(-1)
    for sig in ALL_SIGNALS:
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        handler = signal.getsignal(sig)
        if callable(handler):
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def place_fds(*fds: int) -> None:
    """Make fds 0, 1, 2... of the given fds (the last one not inheritable), close all others."""
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_FREE_FD) for fd in fds]
    for target, fd in enumerate(moved):
        os.dup2(fd, target, inheritable=target < len(moved) - 1)
    os.closerange(len(moved), os.sysconf("SC_OPEN_MAX"))


def forget_the_server() -> None:
    """Undo the server's process-wide settings that would otherwise leak into the user's code."""
    kernel.open_stdio()
    sys.argv = [""]
    sys.path[0] = ""  # imports from the working directory, as in ``python3 -c``
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    # The server's loop is in this thread's policy: user code that asks for a loop gets a new one.
    asyncio.set_event_loop_policy(None)
