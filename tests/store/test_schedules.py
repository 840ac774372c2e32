"""Schedules, on SQLite and PostgreSQL: owner scoping, fires and skips (of two servers firing
one schedule, one does), due and paused schedules, what goes when a schedule or user goes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from agentcell.errors import NotFound
from agentcell.schemas import JobTemplate, SchedulePublic
from agentcell.store import Schedule, Store

TEMPLATE: dict[str, Any] = JobTemplate(
    kind="exec", name="nightly", language="shell", code="date", timeout_s=30
).model_dump()
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def public(row: Schedule) -> SchedulePublic:
    """The API's answer, filled from the row (as the schedules routes will)."""
    return SchedulePublic(
        id=row.id,
        name=row.name,
        kind=row.kind,  # type: ignore[arg-type]
        cron=row.cron,
        tz=row.tz,
        at=row.at,
        paused=row.paused,
        next_run_at=row.next_run_at,
        last_fired_at=row.last_fired_at,
        last_job_id=row.last_job_id,
        fires=row.fires,
        skips=row.skips,
        last_skip_reason=row.last_skip_reason,
        job=JobTemplate.model_validate_json(row.job),
        created_at=row.created_at,
    )


async def _cron(store: Store, user_id: str, next_run_at: datetime | None = T0) -> Schedule:
    return await store.add_schedule(
        user_id,
        name="nightly",
        kind="cron",
        cron="0 2 * * *",
        tz="Europe/Paris",
        at=None,
        job=TEMPLATE,
        next_run_at=next_run_at,
    )


async def _users(store: Store) -> tuple[str, str]:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    return alice.id, bob.id


async def test_add_get_list_delete(store: Store) -> None:
    alice, _ = await _users(store)
    cron = await _cron(store, alice)
    once = await store.add_schedule(
        alice, name="once", kind="at", cron="", tz="UTC", at=T0, job=TEMPLATE, next_run_at=T0
    )
    assert cron.id.startswith("sc_")
    assert len(cron.id) == 19
    got = await store.get_schedule(alice, cron.id)
    assert (got.kind, got.cron, got.tz, got.at, got.next_run_at) == (
        "cron",
        "0 2 * * *",
        "Europe/Paris",
        None,
        T0,
    )
    assert (got.paused, got.fires, got.skips, got.last_skip_reason) == (False, 0, 0, "")
    assert (got.last_fired_at, got.last_job_id) == (None, None)
    assert json.loads(got.job) == TEMPLATE
    answer = public(got)
    assert (answer.job.name, answer.job.output_dir, answer.next_run_at) == ("nightly", "", T0)
    assert public(await store.get_schedule(alice, once.id)).at == T0

    assert [s.id for s in await store.list_schedules(alice)] == [once.id, cron.id]
    await store.delete_schedule(alice, once.id)
    assert [s.id for s in await store.list_schedules(alice)] == [cron.id]
    with pytest.raises(NotFound):
        await store.get_schedule(alice, once.id)
    with pytest.raises(NotFound):
        await store.delete_schedule(alice, once.id)


async def test_another_users_schedule_is_not_found(store: Store) -> None:
    alice, bob = await _users(store)
    schedule = await _cron(store, alice)
    calls = [
        store.get_schedule(bob, schedule.id),
        store.delete_schedule(bob, schedule.id),
        store.set_schedule_paused(bob, schedule.id, True, None),
        store.fire_schedule(bob, schedule.id, due_at=T0, next_run_at=None, job=TEMPLATE),
        store.fire_schedule(bob, schedule.id, due_at=T0, next_run_at=None, job=None),
    ]
    for call in calls:
        with pytest.raises(NotFound) as info:
            await call
        assert info.value.hint
    assert await store.list_schedules(bob) == []
    assert await store.list_jobs(bob) == []
    got = await store.get_schedule(alice, schedule.id)  # untouched
    assert (got.paused, got.next_run_at, got.fires, got.skips) == (False, T0, 0, 0)
    with pytest.raises(NotFound):
        await _cron(store, "u_nobody")


async def test_a_fire_starts_a_job_and_a_skip_counts(store: Store) -> None:
    alice, _ = await _users(store)
    schedule = await _cron(store, alice)
    t1 = T0 + timedelta(days=1)
    before = datetime.now(UTC)

    job = await store.fire_schedule(alice, schedule.id, due_at=T0, next_run_at=t1, job=TEMPLATE)
    assert job is not None
    assert (job.state, job.schedule_id, job.name, job.language, job.code) == (
        "queued",
        schedule.id,
        "nightly",
        "shell",
        "date",
    )
    assert job.output_dir == f"jobs/{job.id}"
    assert [j.id for j in await store.list_jobs(alice)] == [job.id]
    assert [e.state for e in await store.job_events(alice, job.id)] == ["queued"]
    fired = await store.get_schedule(alice, schedule.id)
    assert (fired.next_run_at, fired.fires, fired.skips, fired.last_job_id) == (t1, 1, 0, job.id)
    assert fired.last_fired_at is not None
    assert fired.last_fired_at >= before

    # The same fire again (a second server, late): it was done, nothing happens.
    again = await store.fire_schedule(alice, schedule.id, due_at=T0, next_run_at=t1, job=TEMPLATE)
    assert again is None
    assert len(await store.list_jobs(alice)) == 1

    t2 = t1 + timedelta(days=1)
    skipped = await store.fire_schedule(
        alice, schedule.id, due_at=t1, next_run_at=t2, job=None, skip_reason="still running"
    )
    assert skipped is None
    after = await store.get_schedule(alice, schedule.id)
    assert (after.next_run_at, after.fires, after.skips, after.last_skip_reason) == (
        t2,
        1,
        1,
        "still running",
    )
    assert after.last_job_id == job.id
    assert len(await store.list_jobs(alice)) == 1

    # An "at" schedule's only fire: no next one.
    last = await store.fire_schedule(alice, schedule.id, due_at=t2, next_run_at=None, job=TEMPLATE)
    assert last is not None
    assert (await store.get_schedule(alice, schedule.id)).next_run_at is None
    assert await store.due_schedules(t2 + timedelta(days=365)) == []


async def test_due_and_paused(store: Store) -> None:
    alice, bob = await _users(store)
    now = T0 + timedelta(hours=1)
    due = await _cron(store, alice, T0)
    also_due = await _cron(store, bob, now)  # due at exactly now
    await _cron(store, alice, now + timedelta(seconds=1))  # not yet
    await _cron(store, alice, None)  # never again
    assert [s.id for s in await store.due_schedules(now)] == [due.id, also_due.id]

    paused = await store.set_schedule_paused(alice, due.id, True, T0)
    assert (paused.paused, paused.next_run_at) == (True, T0)
    assert [s.id for s in await store.due_schedules(now)] == [also_due.id]
    # A paused schedule does not fire, even for the time it was due.
    assert (
        await store.fire_schedule(alice, due.id, due_at=T0, next_run_at=now, job=TEMPLATE) is None
    )
    assert await store.list_jobs(alice) == []

    later = now + timedelta(days=1)
    resumed = await store.set_schedule_paused(alice, due.id, False, later)
    assert (resumed.paused, resumed.next_run_at) == (False, later)
    assert [s.id for s in await store.due_schedules(now)] == [also_due.id]
    assert [s.id for s in await store.due_schedules(later)][-1] == due.id  # the least overdue


async def test_racing_servers_one_fires(db_url: str, store: Store) -> None:
    """Servers firing one schedule for the same due time at once: one job starts."""
    alice, _ = await _users(store)
    schedule = await _cron(store, alice)
    servers = [await Store.open(db_url) for _ in range(6)]
    try:
        due_at = T0
        for round_ in range(3):
            next_at = due_at + timedelta(days=1)
            fires = (
                s.fire_schedule(
                    alice,
                    schedule.id,
                    due_at=due_at,
                    next_run_at=next_at,
                    job=TEMPLATE if n % 2 else None,  # some skip, some fire: one applies
                    skip_reason=f"server {n}",
                )
                for n, s in enumerate(servers)
            )
            await asyncio.gather(*fires)
            after = await store.get_schedule(alice, schedule.id)
            assert after.next_run_at == next_at
            assert after.fires + after.skips == round_ + 1
            assert len(await store.list_jobs(alice)) == after.fires
            due_at = next_at
    finally:
        for s in servers:
            await s.close()


async def test_deleting_a_schedule_keeps_its_jobs(store: Store) -> None:
    alice, _ = await _users(store)
    schedule = await _cron(store, alice)
    job = await store.fire_schedule(alice, schedule.id, due_at=T0, next_run_at=None, job=TEMPLATE)
    assert job is not None
    await store.delete_schedule(alice, schedule.id)
    kept = await store.get_job(alice, job.id)
    assert (kept.id, kept.schedule_id) == (job.id, None)


async def test_schedules_and_their_jobs_go_with_their_user(store: Store, raw: Engine) -> None:
    alice, bob = await _users(store)
    schedule = await _cron(store, alice)
    await store.fire_schedule(alice, schedule.id, due_at=T0, next_run_at=None, job=TEMPLATE)
    kept = await _cron(store, bob)
    assert await store.delete_user(alice) is True
    with raw.connect() as conn:
        assert conn.execute(text("SELECT id FROM schedules")).scalars().all() == [kept.id]
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM job_events")).scalar_one() == 0
