"""A shell exec runs under a holder: a fork of the server, made a child subreaper in a session of
its own, that starts ``bash -c CODE`` and reaps. Whatever bash starts stays under the holder even
after bash exits (setsid, double forks, ``nohup … &``), so the server can always tell which exec a
process belongs to: it kills the holder's tree when the exec ends, or keeps it for a background
exec. The holder reports bash's wait status on a pipe and exits once it has no children left.
Standard library only; the child side, like zygote.py's, never returns into the server's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import termios
import time
from collections.abc import Iterable
from typing import NoReturn

from .procs import raise_oom_score
from .tree import set_subreaper
from .zygote import ALL_SIGNALS, place_fds, reset_signals

STATUS_FD = 3  # in the holder
STUCK = b"stuck\n"  # on the status pipe: bash could not be started, the cell is at its pids limit
FORK_TRIES = 20


def fork_holder(
    argv: list[str], cwd: str, env: dict[str, str], *, merged: bool = False
) -> tuple[int, int, int, int]:
    """(holder pid, stdout and stderr read ends, the status pipe's read end). ``merged``: stdout
    and stderr are one pipe (as 2>&1, order kept), whose read end is returned twice."""
    pipes = [os.pipe() for _ in range(2 if merged else 3)]
    writes = [w for _, w in pipes]
    if merged:
        writes.insert(1, writes[0])
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ALL_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            become_holder(argv, cwd, env, [os.open(os.devnull, os.O_RDONLY), *writes], mask)
    except BaseException:
        for r, _ in pipes:
            os.close(r)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for _, w in pipes:
            os.close(w)
    return pid, pipes[0][0], pipes[-2][0], pipes[-1][0]


def fork_terminal_holder(
    argv: list[str], cwd: str, env: dict[str, str], tty: int
) -> tuple[int, int]:
    """(holder pid, the status pipe's read end) of a holder whose session has the
    pseudo-terminal ``tty`` (its follower side) as its controlling terminal, and whose shell
    has it as stdin, stdout and stderr: job control, Ctrl-C and hangups work as in a login."""
    status_r, status_w = os.pipe()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ALL_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            become_holder(argv, cwd, env, [tty, tty, tty, status_w], mask, controlling_tty=True)
    except BaseException:
        os.close(status_r)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(status_w)
    return pid, status_r


def become_holder(
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    fds: list[int],
    mask: Iterable[int],
    *,
    controlling_tty: bool = False,
) -> NoReturn:
    """``fds``: the shell's stdin, stdout and stderr, and the status pipe's write end."""
    try:
        reset_signals()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setsid()
        set_subreaper()
        place_fds(*fds)
        if controlling_tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        bash = fork_patiently()
        if bash < 0:
            os.write(STATUS_FD, STUCK)
        elif bash == 0:
            run_shell(argv, cwd, env, mask)
        os.close(0)
        os.close(1)
        os.close(2)
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == bash:
                os.write(STATUS_FD, b"%d\n" % status)
                os.close(STATUS_FD)
    finally:
        os._exit(0)


def fork_patiently() -> int:
    """fork, retried for a second while the pids limit refuses it (a leftover may be dying);
    -1 if it never succeeds."""
    for _ in range(FORK_TRIES):
        try:
            return os.fork()
        except BlockingIOError:
            time.sleep(1 / FORK_TRIES)
    return -1


def run_shell(argv: list[str], cwd: str, env: dict[str, str], mask: Iterable[int]) -> NoReturn:
    try:
        os.close(STATUS_FD)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise_oom_score()
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    except BaseException as exc:  # noqa: BLE001 - nothing may return into the server's code
        with contextlib.suppress(BaseException):
            os.write(2, f"agentcell: cannot start {argv[0]}: {exc}\n".encode(errors="replace"))
    finally:
        os._exit(127)


def read_status(fd: int) -> asyncio.Future[int | None]:
    """The wait status a holder writes on its status pipe (SIGKILL if it dies without one;
    None if it could not start bash at all)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int | None] = loop.create_future()
    data = bytearray()

    def ready() -> None:
        try:
            chunk = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data.extend(chunk)
        if not chunk or data.endswith(b"\n"):
            loop.remove_reader(fd)
            os.close(fd)
            if not fut.done():
                ended = data.endswith(b"\n")
                fut.set_result(None if data == STUCK else int(data) if ended else signal.SIGKILL)

    os.set_blocking(fd, False)
    loop.add_reader(fd, ready)
    return fut
