"""Process trees: who an exec left behind, and killing all of it. Standard library only.

The server and every python kernel are child subreapers (prctl), and every shell exec runs under
a holder process that is one too (holder.py): an orphan is adopted by the nearest of them, never
by PID 1. So whatever an exec starts stays in the tree under its kernel or holder, even when it
calls setsid or double-forks, and ``kill_tree`` finds all of it by walking children.

Where prctl refuses to make a subreaper (gVisor's runsc says EINVAL), orphans go to PID 1 and out
of the tree; what stays in its shell exec's session is still found (``kill_session``), what calls
setsid is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
from collections.abc import Callable, Collection

PR_SET_CHILD_SUBREAPER = 36
MAX_ROUNDS = 1000  # a fork bomb forks while we stop it; each round stops what the last one found
QUIET_ROUNDS = 2  # rounds that find nothing new before the tree counts as stopped (see alive)


def set_subreaper() -> bool:
    """Become the reaper of orphaned descendants; False where prctl refuses (see above)."""
    try:
        return bool(
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        )
    except (OSError, AttributeError):
        return False


def children(pid: int) -> list[int]:
    """pid's children, from /proc/<pid>/task/*/children (empty when pid is gone)."""
    if not children_files():
        return by_parent().get(pid, [])
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
            found += [int(c) for c in f.read().split()]
    return found


@functools.cache
def children_files() -> bool:
    """Whether the kernel lists children in /proc/<pid>/task/<tid>/children: Linux does only when
    built with CONFIG_PROC_CHILDREN, and gVisor's (runsc's) procfs has no such file."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def by_parent() -> dict[int, list[int]]:
    """Every process's children, from the parent pid in each /proc/<pid>/stat: one pass over
    /proc, where there are no children files (see children_files)."""
    kids: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit() and (ppid := ppid_of(int(name))):
                kids.setdefault(ppid, []).append(int(name))
    return kids


def descendants(pid: int, keep: Collection[int] = ()) -> list[int]:
    """Everything under pid, breadth first, leaving out the subtrees rooted at ``keep``."""
    tree = None if children_files() else by_parent()  # one snapshot for the whole walk
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = children(parent) if tree is None else tree.get(parent, [])
        kids = [c for c in kids if c not in keep]
        found += kids
        todo += kids
    return found


def kill_tree(root: int, keep: Collection[int] = (), *, include_root: bool = False) -> int:
    """SIGKILL everything under root (and root itself if asked), except the subtrees at keep.
    Returns how many processes it signalled."""
    return stop_then_kill(lambda: descendants(root, keep), [root] if include_root else [])


def kill_session(sid: int) -> int:
    """SIGKILL every process of session sid but its leader, as kill_tree does: without a
    subreaper, what a shell exec left running is PID 1's, but still in its holder's session."""
    return stop_then_kill(lambda: session_members(sid))


def stop_then_kill(find: Callable[[], list[int]], first: Collection[int] = ()) -> int:
    """Stop what find() finds, round after round until a round finds nothing new, so that a
    fork bomb cannot outrun it; then kill it all."""
    stopped: set[int] = set(first)
    for pid in first:
        signal_pid(pid, signal.SIGSTOP)
    quiet = 0
    for _ in range(MAX_ROUNDS):
        new = [pid for pid in find() if pid not in stopped]
        quiet = 0 if new else quiet + 1
        if quiet == QUIET_ROUNDS:
            break
        for pid in new:
            signal_pid(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        signal_pid(pid, signal.SIGKILL)
    return len(stopped)


def session_members(sid: int) -> list[int]:
    """The processes of session sid, but its leader (the session is /proc/<pid>/stat's 6th)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != sid and _stat_fields(int(name))[2:3] == [sid]:
                found.append(int(name))
    return found


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
    fields = _stat_fields(pid)
    return fields[0] if fields else 0


def _stat_fields(pid: int) -> list[int]:
    """ppid, process group and session, from /proc/<pid>/stat ([] when pid is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return []
    return [int(field) for field in stat[stat.rfind(b")") + 4 :].split()[:3]]


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
