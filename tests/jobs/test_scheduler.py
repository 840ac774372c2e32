"""Schedules firing against a real store (SQLite): once per due time, a fire missed while no
server ran made up once, an overlapping fire skipped with its reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentcell.jobs.scheduler import Scheduler
from agentcell.store import Job, Schedule, Store

TEMPLATE = {
    "kind": "exec",
    "name": "tick",
    "language": "shell",
    "code": "true",
    "file": "",
    "prompt": "",
    "output_dir": "",
    "timeout_s": 60.0,
}
Fires = list[tuple[str, str | None, str]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(f"sqlite:///{tmp_path / 'agentcell.db'}") as s:
        yield s


async def fires_of(store: Store) -> tuple[Scheduler, Fires]:
    fired: Fires = []

    async def on_fire(schedule: Schedule, job: Job | None, skipped: str) -> None:
        fired.append((schedule.id, job.id if job else None, skipped))

    return Scheduler(store, on_fire), fired


async def test_a_missed_cron_fires_once_then_skips_while_its_job_runs(store: Store) -> None:
    user, _ = await store.create_user("ada")
    start = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    schedule = await store.add_schedule(
        user.id,
        name="tick",
        kind="cron",
        cron="0 * * * *",
        tz="UTC",
        at=None,
        job=TEMPLATE,
        next_run_at=start,
    )
    scheduler, fired = await fires_of(store)
    # The server was down from 06:00 to 09:30: three fires missed, one is made up.
    await scheduler.fire_due(start + timedelta(hours=3, minutes=30))
    [(sid, job_id, skipped)] = fired
    assert (sid, skipped) == (schedule.id, "")
    assert job_id is not None
    after = await store.get_schedule(user.id, schedule.id)
    assert after.next_run_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert (after.fires, after.last_job_id) == (1, job_id)
    await scheduler.fire_due(start + timedelta(hours=3, minutes=45))  # not due again yet
    assert len(fired) == 1
    # 10:00 while the job is still queued: skipped, with the reason kept.
    await scheduler.fire_due(datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC))
    assert fired[-1][1] is None
    assert job_id in fired[-1][2]
    skipped_once = await store.get_schedule(user.id, schedule.id)
    assert (skipped_once.skips, skipped_once.fires) == (1, 1)
    assert "still queued" in skipped_once.last_skip_reason
    assert skipped_once.next_run_at == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    # Once the job has ended, the next fire starts a new one.
    await store.set_job_state(user.id, job_id, "running", "", expect={"queued"})
    await store.set_job_state(user.id, job_id, "succeeded", "", expect={"running"})
    await scheduler.fire_due(datetime(2026, 12, 1, 11, 0, 1, tzinfo=UTC))
    assert fired[-1][1] not in (None, job_id)
    assert (await store.get_schedule(user.id, schedule.id)).fires == 2


async def test_an_at_schedule_fires_once_and_a_paused_one_not_at_all(store: Store) -> None:
    user, _ = await store.create_user("bo")
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    once, paused = [
        await store.add_schedule(
            user.id, name=n, kind="at", cron="", tz="UTC", at=now, job=TEMPLATE, next_run_at=now
        )
        for n in ("once", "held")
    ]
    await store.set_schedule_paused(user.id, paused.id, True, now)
    scheduler, fired = await fires_of(store)
    await scheduler.fire_due(now + timedelta(seconds=1))
    await scheduler.fire_due(now + timedelta(seconds=2))
    assert [(sid, skipped) for sid, _, skipped in fired] == [(once.id, "")]
    done = await store.get_schedule(user.id, once.id)
    assert (done.next_run_at, done.fires) == (None, 1)
    jobs = await store.list_jobs(user.id)
    assert [j.schedule_id for j in jobs] == [once.id]
