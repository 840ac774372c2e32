"""A job's final state, from what its cell says about it."""

from __future__ import annotations

from dataclasses import dataclass

from agentcell.executor.protocol import JobInfo
from agentcell.schemas import JobState

RESTARTED = "the cell was restarted while the job ran (its processes are gone; files are kept)"


@dataclass(frozen=True)
class Outcome:
    state: JobState
    reason: str
    exit_code: int | None


def outcome(info: JobInfo, timeout_s: float) -> Outcome:
    """How an exec job ended, as its executor reports it (``info.state`` is not "running")."""
    code = info.exit_code
    if info.state == "lost":
        return Outcome("interrupted", RESTARTED, None)
    if info.cancelled:
        return Outcome("cancelled", "cancelled", code)
    if info.timed_out:
        return Outcome("timed_out", f"it ran longer than its timeout of {timeout_s:g} s", code)
    if info.oom_killed:
        return Outcome("failed", "killed: the cell ran out of memory", code)
    if code == 0:
        return Outcome("succeeded", "", 0)
    if code is not None and code < 0:
        return Outcome("failed", f"killed by signal {-code}", code)
    return Outcome("failed", f"exit code {code}", code)
