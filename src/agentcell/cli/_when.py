"""Times and durations as the CLI takes and shows them: ``--timeout 1h30m``, ``--at +10m`` or
an ISO-8601 time, and a job's run time in a table."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[dhms])+")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_HELP = "90s, 30m, 4h, 1h30m, or seconds"
AT_HELP = "an ISO-8601 time (2026-05-01T07:00, local time unless it has an offset) or +10m"


def duration(text: str) -> float:
    """Seconds of ``90s``, ``30m``, ``4h``, ``1h30m``, ``2d``, or of a bare number."""
    spelled = text.strip().lower()
    try:
        seconds = float(spelled)
    except ValueError:
        if not _DURATION.fullmatch(spelled):
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r}: use e.g. {DURATION_HELP}"
            ) from None
        seconds = sum(float(n) * _SECONDS[unit] for n, unit in _PART.findall(spelled))
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: it must be more than 0")
    return seconds


def at_time(text: str, now: datetime | None = None) -> datetime:
    """When ``--at`` says: ``+DURATION`` from now, or an ISO-8601 time; aware, in UTC when it
    gives an offset or ``Z``, else this host's local time."""
    spelled = text.strip()
    if spelled.startswith("+"):
        try:
            later = duration(spelled[1:])
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"invalid time {text!r}: after '+' give a duration, e.g. +10m, +2h"
            ) from None
        return (now or datetime.now().astimezone()) + timedelta(seconds=later)
    try:
        at = datetime.fromisoformat(spelled)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: use {AT_HELP}") from None
    return at if at.tzinfo else at.astimezone()  # naive: local time


def took(seconds: float | None) -> str:
    """A run time, short: 4.2s, 12m05s, 4h02m, 2d03h."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (to now while it runs); None before it starts."""
    if start is None:
        return None
    return ((end or datetime.now(start.tzinfo)) - start).total_seconds()
