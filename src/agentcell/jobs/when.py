"""When a schedule fires: ``at`` once, or ``cron`` (5 fields) in an IANA time zone.

The next fire of a cron expression is computed by cronsim (the library healthchecks.io runs),
which walks the expression in the zone's local time and handles DST as cron does: a time that
does not exist that day (spring forward) fires at the next one that does, a time that happens
twice (fall back) fires once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from agentcell.errors import InvalidRequest

CRON_HINT = (
    "a cron expression has 5 fields: minute hour day-of-month month day-of-week, "
    "e.g. '0 7 * * *' for every day at 07:00"
)


def zone(tz: str) -> ZoneInfo:
    """The IANA time zone named ``tz``; InvalidRequest for a name that is not one."""
    try:
        if not tz or tz != tz.strip() or tz.startswith(("/", ".")) or ".." in tz:
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"unknown time zone {tz!r}",
            hint="name an IANA time zone, e.g. UTC, Europe/Paris, America/New_York",
        ) from None


def check_cron(cron: str) -> None:
    """InvalidRequest unless ``cron`` is a valid 5-field expression."""
    if len(cron.split()) != 5:
        raise InvalidRequest(f"bad cron expression {cron!r}: it needs 5 fields", hint=CRON_HINT)
    try:
        CronSim(cron, datetime.now(UTC))  # refuses what matches no day, e.g. '0 0 30 2 *'
    except CronSimError as exc:
        raise InvalidRequest(f"bad cron expression {cron!r}: {exc}", hint=CRON_HINT) from None


def next_fire(cron: str, tz: str, after: datetime) -> datetime:
    """The first fire of ``cron`` (checked) in ``tz`` strictly after ``after``, in UTC."""
    return next(iter(CronSim(cron, after.astimezone(zone(tz))))).astimezone(UTC)


def parse_at(at: datetime, now: datetime) -> datetime:
    """An ``at`` time as UTC: it must name its zone (or Z) and may not be in the past by more
    than a minute (a clock a little behind the server's should still work)."""
    if at.tzinfo is None:
        raise InvalidRequest(
            f"the time {at.isoformat()} has no time zone",
            hint="give the offset, e.g. 2026-12-24T18:00:00+01:00, or Z for UTC",
        )
    at = at.astimezone(UTC)
    if (now - at).total_seconds() > 60:
        raise InvalidRequest(
            f"the time {at.isoformat()} is in the past", hint="give a time in the future"
        )
    return at
