"""Process trees: who an exec left behind, and killing all of it. Standard library only.

The server and every python kernel are child subreapers (prctl), and every shell exec runs under
a holder process that is one too (holder.py): an orphan is adopted by the nearest of them, never
by PID 1. So whatever an exec starts stays in the tree under its kernel or holder, even when it
calls setsid or double-forks, and ``kill_tree`` finds all of it by walking children.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from collections.abc import Collection

PR_SET_CHILD_SUBREAPER = 36
MAX_ROUNDS = 1000  # a fork bomb forks while we stop it; each round stops what the last one found
QUIET_ROUNDS = 2  # rounds that find nothing new before the tree counts as stopped (see alive)


def set_subreaper() -> None:
    """Become the reaper of orphaned descendants (Linux; a no-op where prctl is refused)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def children(pid: int) -> list[int]:
    """pid's children, from /proc/<pid>/task/*/children (empty when pid is gone)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
            found += [int(c) for c in f.read().split()]
    return found


def descendants(pid: int, keep: Collection[int] = ()) -> list[int]:
    """Everything under pid, breadth first, leaving out the subtrees rooted at ``keep``."""
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = [c for c in children(todo.pop()) if c not in keep]
        found += kids
        todo += kids
    return found


def kill_tree(root: int, keep: Collection[int] = (), *, include_root: bool = False) -> int:
    """SIGKILL everything under root (and root itself if asked), except the subtrees at keep.
    Stops what it finds first, round after round until a round finds nothing new, so that a
    fork bomb cannot outrun it; then kills. Returns how many processes it signalled."""
    stopped: set[int] = set()
    if include_root:
        signal_pid(root, signal.SIGSTOP)
        stopped.add(root)
    quiet = 0
    for _ in range(MAX_ROUNDS):
        new = [pid for pid in descendants(root, keep) if pid not in stopped]
        quiet = 0 if new else quiet + 1
        if quiet == QUIET_ROUNDS:
            break
        for pid in new:
            signal_pid(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        signal_pid(pid, signal.SIGKILL)
    return len(stopped)


async def wait_dead(root: int, keep: Collection[int] = ()) -> None:
    """Wait (a second at most) until everything under root but keep is dead: zombies, ready to
    be reaped by their parent (the subreaper at root, once their own parents died)."""
    for _ in range(1000):
        if all(state(pid) in ("Z", "") for pid in descendants(root, keep)):
            return
        await asyncio.sleep(0.001)


def alive(root: int, keep: Collection[int] = (), include_root: bool = False) -> bool:
    """Whether anything under root but keep (or root itself, if asked) still runs. The children
    lists in /proc are exact only while a tree is stopped: a process being reparented as
    kill_tree reads them can be missed, so callers that must leave nothing kill until this is
    false."""
    pids = descendants(root, keep) + ([root] if include_root else [])
    return any(state(pid) not in ("Z", "") for pid in pids)


def state(pid: int) -> str:
    """The process state letter from /proc/<pid>/stat ('' when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat[stat.rfind(b")") + 2 :][:1].decode()


def ppid_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def command_of(pid: int) -> str:
    """The command line of pid, as ps shows it ('' when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def reap_dead(spare: Collection[int] = (), *, everything: bool = False) -> int:
    """Reap our children that died of SIGKILL (the leftovers kill_tree killed), or with
    ``everything`` all our dead children; the status of every other child, and of spare, is left
    to whoever waits for it (a Popen in the code)."""
    reaped = 0
    for _ in range(MAX_ROUNDS):  # a reaped child's own dead children may come to us next
        found = 0
        for pid in children(os.getpid()):
            if pid in spare:
                continue
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                continue
            if info is None:
                continue
            if everything or (info.si_code == os.CLD_KILLED and info.si_status == signal.SIGKILL):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                    found += 1
        if not found:
            break
        reaped += found
    return reaped
