"""When schedules fire: cron next-fire times through cronsim, in a time zone, across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentcell.errors import InvalidRequest
from agentcell.jobs.when import check_cron, next_fire, parse_at, zone


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cron", "tz", "after", "expected"),
    [
        ("0 7 * * *", "UTC", utc(2026, 1, 1, 6, 59), utc(2026, 1, 1, 7, 0)),
        ("0 7 * * *", "UTC", utc(2026, 1, 1, 7, 0), utc(2026, 1, 2, 7, 0)),  # strictly after
        ("0 7 * * *", "Europe/Paris", utc(2026, 1, 10, 12), utc(2026, 1, 11, 6, 0)),  # CET
        ("0 7 * * *", "Europe/Paris", utc(2026, 7, 10, 12), utc(2026, 7, 11, 5, 0)),  # CEST
        # 02:30 does not exist in Paris on 29 March 2026 (spring forward): the next one that does.
        ("30 2 * * *", "Europe/Paris", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 0)),
        ("*/15 * * * *", "UTC", utc(2026, 5, 5, 10, 7), utc(2026, 5, 5, 10, 15)),
        ("0 9 * * 1", "America/New_York", utc(2026, 12, 2), utc(2026, 12, 7, 14, 0)),  # Monday
        ("0 0 29 2 *", "UTC", utc(2026, 3, 1), utc(2028, 2, 29)),  # the next leap day
    ],
)
def test_next_fire(cron: str, tz: str, after: datetime, expected: datetime) -> None:
    check_cron(cron)
    assert next_fire(cron, tz, after) == expected


@pytest.mark.parametrize(
    "cron", ["", "* * * *", "* * * * * *", "61 * * * *", "0 0 30 2 *", "x y z a b"]
)
def test_bad_cron_expressions_are_refused_with_a_hint(cron: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_cron(cron)
    assert "5 fields" in raised.value.hint


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", " UTC"])
def test_unknown_time_zones_are_refused(tz: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown time zone"):
        zone(tz)


def test_at_needs_a_zone_and_the_future() -> None:
    now = utc(2026, 12, 2, 12)
    assert parse_at(now + timedelta(hours=1), now) == now + timedelta(hours=1)
    assert parse_at(now - timedelta(seconds=30), now) == now - timedelta(seconds=30)  # clock skew
    with pytest.raises(InvalidRequest, match="in the past"):
        parse_at(now - timedelta(hours=1), now)
    with pytest.raises(InvalidRequest, match="no time zone"):
        parse_at(datetime(2027, 1, 1), now)  # noqa: DTZ001
