"""The audit trail, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentcell.errors import InvalidRequest
from agentcell.store import Store


async def test_record_and_list_one_user(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    before = datetime.now(UTC)
    await store.record(
        alice.id, "exec", target="python", detail="print(1)", exit_code=0, duration_ms=1.5
    )
    await store.record(alice.id, "file.write", target="notes/a.txt", ok=False)

    events = await store.audit(alice.id)
    assert [e.action for e in events] == ["file.write", "exec"]  # newest first
    write, run = events
    assert (run.user_id, run.target, run.detail) == (alice.id, "python", "print(1)")
    assert (run.exit_code, run.duration_ms, run.ok) == (0, 1.5, True)
    assert (write.target, write.detail, write.exit_code, write.duration_ms, write.ok) == (
        "notes/a.txt",
        "",
        None,
        None,
        False,
    )
    assert run.at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= run.at <= write.at <= datetime.now(UTC)


async def test_a_user_never_sees_another_users_events(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    for i in range(3):
        await store.record(alice.id, "exec", detail=f"alice {i}")
        await store.record(bob.id, "exec", detail=f"bob {i}")

    alice_events = await store.audit(alice.id)
    bob_events = await store.audit(bob.id)
    assert len(alice_events) == len(bob_events) == 3
    assert {(e.user_id, e.detail) for e in alice_events} == {
        (alice.id, f"alice {i}") for i in range(3)
    }
    assert {(e.user_id, e.detail) for e in bob_events} == {(bob.id, f"bob {i}") for i in range(3)}
    # Paging from an id of another user's event still shows only one's own.
    assert all(e.user_id == alice.id for e in await store.audit(alice.id, before_id=10**9))
    assert await store.audit("u_nobody") == []


async def test_admin_sees_everyone(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    await store.record(alice.id, "exec")
    await store.record(bob.id, "cell.restart")
    await store.record("admin", "user.create", target=bob.id)

    events = await store.audit(None)
    assert [(e.user_id, e.action) for e in events] == [
        ("admin", "user.create"),
        (bob.id, "cell.restart"),
        (alice.id, "exec"),
    ]


async def test_pagination_with_before_id(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    for i in range(7):
        await store.record(alice.id, "exec", detail=str(i))
        await store.record(bob.id, "exec", detail=str(i))

    pages: list[list[str]] = []
    before: int | None = None
    while page := await store.audit(alice.id, limit=3, before_id=before):
        pages.append([e.detail for e in page])
        ids = [e.id for e in page]
        assert ids == sorted(ids, reverse=True)
        before = ids[-1]
    assert pages == [["6", "5", "4"], ["3", "2", "1"], ["0"]]

    everyone = await store.audit(None, limit=4)
    assert len(everyone) == 4
    rest = await store.audit(None, limit=1000, before_id=everyone[-1].id)
    assert len(rest) == 10
    assert {e.id for e in everyone}.isdisjoint(e.id for e in rest)


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_limit_out_of_range(store: Store, limit: int) -> None:
    with pytest.raises(InvalidRequest):
        await store.audit(None, limit=limit)


async def test_detail_is_trimmed(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    await store.record(alice.id, "exec", detail="x" * 2000)
    await store.record(alice.id, "exec", detail="y" * 10_000, target="t" * 5000)
    await store.record(alice.id, "exec", detail="nul\x00byte")  # PostgreSQL text has no NUL

    nul, long, exact = await store.audit(alice.id)
    assert exact.detail == "x" * 2000
    assert len(long.detail) == 2000
    assert long.detail.startswith("y" * 1999)
    assert long.detail.endswith("\u2026")
    assert len(long.target) <= 1000
    assert nul.detail == "nul\ufffdbyte"


async def test_deleting_a_user_keeps_their_audit(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    await store.record(alice.id, "exec", detail="before")
    await store.record("admin", "user.delete", target=alice.id)
    assert await store.delete_user(alice.id)

    assert [e.detail for e in await store.audit(alice.id)] == ["before"]
    assert [e.action for e in await store.audit(None)] == ["user.delete", "exec"]
    # Recording for a user id that no longer exists works too: no foreign key.
    await store.record(alice.id, "cell.delete")
    assert len(await store.audit(alice.id)) == 2


async def test_an_exec_is_written_when_it_starts_and_completed_when_it_ends(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    ref = store.exec_started(alice.id, "agent:s_1", "shell", "sleep 30")
    await store.flush()  # the start row is in the database while the exec runs
    (running,) = await store.audit(alice.id)
    assert (running.action, running.status, running.started_by) == ("exec", "running", "agent:s_1")
    assert (running.target, running.detail, running.exit_code) == ("shell", "sleep 30", None)

    store.exec_ended(ref, exit_code=1, duration_ms=7.0, ok=False, error="timed out")
    (done,) = await store.audit(alice.id)
    assert (done.id, done.status, done.exit_code, done.duration_ms, done.ok) == (
        running.id,
        "done",
        1,
        7.0,
        False,
    )
    assert done.detail == "timed out\nsleep 30"


async def test_a_quick_exec_is_one_row(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    ref = store.exec_started(alice.id, "api", "python", "print(1)")
    store.exec_ended(ref, exit_code=0, duration_ms=1.0, ok=True)  # before the batch is written
    (event,) = await store.audit(alice.id)
    assert (event.status, event.started_by, event.exit_code, event.ok) == ("done", "api", 0, True)


async def test_execs_left_running_are_marked_unfinished(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    store.exec_started(alice.id, "api", "shell", "sleep 30")
    await store.flush()  # then the server dies: nobody ends it
    assert await store.close_unfinished_execs() == 1
    (event,) = await store.audit(alice.id)
    assert (event.status, event.ok) == ("unfinished", False)
    assert event.detail.startswith("unfinished: the server stopped before this exec ended\n")
    assert event.detail.endswith("sleep 30")
    assert await store.close_unfinished_execs() == 0
