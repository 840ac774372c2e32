"""Jobs and their state changes, on SQLite and PostgreSQL: owner scoping, conditional state
changes (the claim of a queued job: one server wins), the dispatcher's views, cascades."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from agentcell.errors import InvalidRequest, NotFound
from agentcell.schemas import JobPublic, JobStateChange
from agentcell.store import Job, JobEvent, Store

EXEC: dict[str, Any] = {
    "name": "count",
    "kind": "exec",
    "language": "python",
    "code": "print(1)",
    "file": "",
    "prompt": "",
    "output_dir": "",
    "timeout_s": 60.0,
}
AGENT: dict[str, Any] = {**EXEC, "kind": "agent", "language": "", "code": "", "prompt": "hi"}


def public(job: Job, events: list[JobEvent]) -> JobPublic:
    """The API's answer, filled from the rows (as the jobs routes will)."""
    return JobPublic(
        id=job.id,
        name=job.name,
        kind=job.kind,  # type: ignore[arg-type]
        state=job.state,  # type: ignore[arg-type]
        reason=job.reason,
        language=job.language or None,  # type: ignore[arg-type]
        code=job.code,
        file=job.file,
        prompt=job.prompt,
        output_dir=job.output_dir,
        timeout_s=job.timeout_s,
        exit_code=job.exit_code,
        attempt=job.attempt,
        retry_of=job.retry_of,
        schedule_id=job.schedule_id,
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        log_bytes=job.log_bytes,
        events=[JobStateChange(at=e.at, state=e.state, reason=e.reason) for e in events],  # type: ignore[arg-type]
    )


async def _users(store: Store) -> tuple[str, str]:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    return alice.id, bob.id


async def test_add_get_list(store: Store) -> None:
    alice, _ = await _users(store)
    before = datetime.now(UTC)
    first = await store.add_job(alice, **EXEC)
    second = await store.add_job(alice, **{**AGENT, "output_dir": "out/here"})

    assert first.id.startswith("j_")
    assert len(first.id) == 18
    assert first.output_dir == f"jobs/{first.id}"  # "" is the job's own folder
    assert second.output_dir == "out/here"
    assert (first.state, first.reason, first.attempt, first.node, first.log_bytes) == (
        "queued",
        "",
        1,
        "",
        0,
    )
    assert (first.started_at, first.ended_at, first.exit_code, first.schedule_id) == (
        None,
        None,
        None,
        None,
    )
    assert before - timedelta(seconds=5) <= first.created_at <= datetime.now(UTC)
    assert first.created_at.utcoffset() == timedelta(0)

    got = await store.get_job(alice, first.id)
    assert (got.id, got.code, got.created_at, got.timeout_s) == (
        first.id,
        "print(1)",
        first.created_at,
        60.0,
    )
    [queued] = await store.job_events(alice, first.id)
    assert (queued.state, queued.reason, queued.at) == ("queued", "", first.created_at)
    answer = public(got, [queued])
    assert (answer.language, answer.state, answer.events[0].state) == ("python", "queued", "queued")
    agent = public(await store.get_job(alice, second.id), [])
    assert (agent.kind, agent.language, agent.prompt) == ("agent", None, "hi")

    assert [j.id for j in await store.list_jobs(alice)] == [second.id, first.id]  # newest first
    assert [j.id for j in await store.list_jobs(alice, limit=1)] == [second.id]
    assert await store.list_jobs(alice, state="running") == []
    with pytest.raises(InvalidRequest):
        await store.list_jobs(alice, limit=0)


async def test_a_retry_and_its_first_reason(store: Store) -> None:
    alice, _ = await _users(store)
    first = await store.add_job(alice, **EXEC)
    again = await store.add_job(
        alice, **EXEC, attempt=2, retry_of=first.id, reason=f"retry of {first.id}"
    )
    assert (again.attempt, again.retry_of, again.reason) == (2, first.id, f"retry of {first.id}")
    [queued] = await store.job_events(alice, again.id)
    assert queued.reason == f"retry of {first.id}"


async def test_text_is_kept_whole_but_for_nul(store: Store) -> None:
    alice, _ = await _users(store)
    job = await store.add_job(alice, **{**EXEC, "code": "print('a\x00b')\n", "name": "n" * 300})
    got = await store.get_job(alice, job.id)
    assert got.code == "print('a\ufffdb')\n"
    assert len(got.name) == 100


async def test_another_users_job_is_not_found(store: Store) -> None:
    alice, bob = await _users(store)
    job = await store.add_job(alice, **EXEC)
    calls = [
        store.get_job(bob, job.id),
        store.job_events(bob, job.id),
        store.set_job_state(bob, job.id, "running", "", expect={"queued"}),
        store.set_job_state(bob, job.id, "cancelled", "by bob"),
        store.update_job(bob, job.id, log_bytes=5),
        store.delete_job(bob, job.id),
        store.get_job(alice, "j_nope"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as info:
            await call
        assert info.value.hint
    assert await store.list_jobs(bob) == []
    assert await store.count_jobs(bob) == (0, 0)
    got = await store.get_job(alice, job.id)  # untouched
    assert (got.state, got.log_bytes) == ("queued", 0)
    assert len(await store.job_events(alice, job.id)) == 1
    with pytest.raises(NotFound):
        await store.add_job("u_nobody", **EXEC)


async def test_state_changes_are_conditional_and_recorded(store: Store) -> None:
    alice, _ = await _users(store)
    job = await store.add_job(alice, **EXEC)

    claimed = await store.set_job_state(alice, job.id, "running", "", expect={"queued"}, node="n1")
    assert claimed is not None
    assert (claimed.state, claimed.node, claimed.ended_at) == ("running", "n1", None)
    assert claimed.started_at is not None
    assert claimed.started_at >= job.created_at
    assert await store.set_job_state(alice, job.id, "running", "", expect={"queued"}) is None

    # Re-attached after a restart: still running, its start kept.
    again = await store.set_job_state(alice, job.id, "running", "re-attached", node="n2")
    assert again is not None
    assert (again.started_at, again.node) == (claimed.started_at, "n2")

    done = await store.set_job_state(alice, job.id, "succeeded", "", exit_code=0, log_bytes=12)
    assert done is not None
    assert (done.state, done.exit_code, done.log_bytes) == ("succeeded", 0, 12)
    assert done.ended_at is not None
    assert done.ended_at >= done.started_at  # type: ignore[operator]
    # Ended: by default nothing moves it any more.
    assert await store.set_job_state(alice, job.id, "cancelled", "too late") is None
    assert (await store.get_job(alice, job.id)).state == "succeeded"

    events = await store.job_events(alice, job.id)
    assert [(e.state, e.reason) for e in events] == [
        ("queued", ""),
        ("running", ""),
        ("running", "re-attached"),
        ("succeeded", ""),
    ]
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[-1].at == done.ended_at
    answer = public(done, events)
    assert [e.state for e in answer.events] == ["queued", "running", "running", "succeeded"]


async def test_given_times_and_explicit_expectations(store: Store) -> None:
    alice, _ = await _users(store)
    job = await store.add_job(alice, **EXEC)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # A server that finds the cell's record of a job that ended while it was away.
    ended = await store.set_job_state(
        alice, job.id, "interrupted", "the server stopped", started_at=at, ended_at=at
    )
    assert ended is not None
    assert (ended.started_at, ended.ended_at, ended.reason) == (at, at, "the server stopped")
    assert await store.set_job_state(alice, job.id, "failed", "", expect={"queued"}) is None
    moved = await store.set_job_state(alice, job.id, "failed", "why", expect={"interrupted"})
    assert moved is not None
    assert moved.state == "failed"

    with pytest.raises(ValueError, match="unknown job state"):
        await store.set_job_state(alice, job.id, "exploded", "")
    with pytest.raises(TypeError):
        await store.set_job_state(alice, job.id, "failed", "", user_id="u_other")


async def test_update_and_delete(store: Store, raw: Engine) -> None:
    alice, _ = await _users(store)
    job = await store.add_job(alice, **EXEC)
    other = await store.add_job(alice, **EXEC)
    updated = await store.update_job(alice, job.id, log_bytes=2**40, node="n1")
    assert (updated.log_bytes, updated.node, updated.state) == (2**40, "n1", "queued")
    assert (await store.get_job(alice, job.id)).log_bytes == 2**40
    with pytest.raises(TypeError):
        await store.update_job(alice, job.id, state="running")

    await store.delete_job(alice, job.id)
    with pytest.raises(NotFound):
        await store.get_job(alice, job.id)
    with pytest.raises(NotFound):
        await store.delete_job(alice, job.id)
    with raw.connect() as conn:
        events = conn.execute(text("SELECT job_id FROM job_events")).scalars().all()
    assert events == [other.id]  # the deleted job's events went with it


async def test_counts_and_the_dispatchers_views(store: Store) -> None:
    alice, bob = await _users(store)
    a1 = await store.add_job(alice, **EXEC)
    b1 = await store.add_job(bob, **EXEC)
    a2 = await store.add_job(alice, **AGENT)
    a3 = await store.add_job(alice, **EXEC)
    await store.set_job_state(alice, a1.id, "running", "", expect={"queued"}, node="n1")
    await store.set_job_state(alice, a2.id, "running", "", expect={"queued"}, node="n2")
    await store.set_job_state(alice, a3.id, "cancelled", "by alice")

    assert await store.count_jobs(alice) == (2, 0)
    assert await store.count_jobs(bob) == (0, 1)
    assert [j.id for j in await store.queued_jobs()] == [b1.id]
    assert [j.id for j in await store.running_jobs()] == [a1.id, a2.id]
    assert [j.id for j in await store.running_jobs("n2")] == [a2.id]
    assert await store.running_jobs("n3") == []
    assert await store.jobs_by_state() == {"running": 2, "queued": 1, "cancelled": 1}
    assert [j.id for j in await store.list_jobs(alice, state="running")] == [a2.id, a1.id]

    more = [await store.add_job(bob, **EXEC) for _ in range(3)]
    assert [j.id for j in await store.queued_jobs()] == [b1.id, *(j.id for j in more)]
    assert [j.id for j in await store.queued_jobs(limit=2)] == [b1.id, more[0].id]


async def test_racing_servers_one_claims(db_url: str, store: Store) -> None:
    """Servers claiming one queued job at once (a connection each): exactly one wins it; then
    two ends racing (the job succeeds as it is cancelled): exactly one applies."""
    alice, _ = await _users(store)
    servers = [await Store.open(db_url) for _ in range(6)]
    try:
        for _ in range(3):
            job = await store.add_job(alice, **EXEC)
            claims = (
                s.set_job_state(alice, job.id, "running", "", expect={"queued"}, node=f"n{n}")
                for n, s in enumerate(servers)
            )
            won = [j for j in await asyncio.gather(*claims) if j is not None]
            assert len(won) == 1, won
            got = await store.get_job(alice, job.id)
            assert (got.state, got.node) == ("running", won[0].node)

            ends = await asyncio.gather(
                servers[0].set_job_state(alice, job.id, "succeeded", "", exit_code=0),
                servers[1].set_job_state(alice, job.id, "cancelled", "by alice"),
            )
            [ended] = [j for j in ends if j is not None]
            events = await store.job_events(alice, job.id)
            assert [e.state for e in events] == ["queued", "running", ended.state]
    finally:
        for s in servers:
            await s.close()


async def test_jobs_go_with_their_user(store: Store, raw: Engine) -> None:
    alice, bob = await _users(store)
    job = await store.add_job(alice, **EXEC)
    await store.set_job_state(alice, job.id, "running", "", expect={"queued"})
    kept = await store.add_job(bob, **EXEC)
    assert await store.delete_user(alice) is True
    with raw.connect() as conn:
        assert conn.execute(text("SELECT id FROM jobs")).scalars().all() == [kept.id]
        assert conn.execute(text("SELECT job_id FROM job_events")).scalars().all() == [kept.id]
