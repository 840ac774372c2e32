"""Chat sessions and their messages, on SQLite and PostgreSQL: every call scoped by owner."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from agentcell.errors import NotFound
from agentcell.store import Store


async def test_create_list_get_delete(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    before = datetime.now(UTC)
    first = await store.create_session(alice.id, "  plans  ")
    second = await store.create_session(alice.id)

    assert first.id.startswith("s_")
    assert first.id != second.id
    assert (first.title, second.title) == ("plans", "")
    assert first.user_id == alice.id
    assert before - timedelta(seconds=5) <= first.created_at <= datetime.now(UTC)
    assert first.created_at.utcoffset() == timedelta(0)
    assert first.updated_at == first.created_at

    got = await store.get_session(alice.id, first.id)
    assert got is not None
    assert (got.id, got.title, got.created_at) == (first.id, "plans", first.created_at)
    assert {s.id for s in await store.list_sessions(alice.id)} == {first.id, second.id}

    assert await store.delete_session(alice.id, first.id) is True
    assert await store.get_session(alice.id, first.id) is None
    assert await store.delete_session(alice.id, first.id) is False
    assert [s.id for s in await store.list_sessions(alice.id)] == [second.id]


async def test_a_turn_is_kept_whole(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    chat = await store.create_session(alice.id)
    events = json.dumps([{"event": "text", "agent": "coordinator", "text": "4"}])
    asked_at = datetime.now(UTC) - timedelta(seconds=2)

    answer = await store.add_turn(
        alice.id, chat.id, "what is\n2+2?", "4", events, b'[{"kind":"request"}]', prompt_at=asked_at
    )
    assert answer.role == "assistant"

    asked, answered = await store.messages(alice.id, chat.id)
    assert (asked.role, asked.content, asked.events, asked.model_messages) == (
        "user",
        "what is\n2+2?",
        "[]",
        "",
    )
    assert asked.created_at == asked_at
    assert (answered.role, answered.content) == ("assistant", "4")
    assert json.loads(answered.events) == [{"event": "text", "agent": "coordinator", "text": "4"}]
    assert answered.id == answer.id > asked.id
    assert await store.history(alice.id, chat.id) == [b'[{"kind":"request"}]']

    got = await store.get_session(alice.id, chat.id)
    assert got is not None
    assert got.title == "what is 2+2?"  # the first prompt, on one line
    assert got.updated_at > chat.updated_at

    await store.add_turn(alice.id, chat.id, "and 3+3?", "6", "[]", "[2]")
    assert [m.content for m in await store.messages(alice.id, chat.id)] == [
        "what is\n2+2?",
        "4",
        "and 3+3?",
        "6",
    ]
    assert await store.history(alice.id, chat.id) == [b'[{"kind":"request"}]', b"[2]"]
    again = await store.get_session(alice.id, chat.id)
    assert again is not None
    assert again.title == "what is 2+2?"  # named once


async def test_titles(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    long = await store.create_session(alice.id)
    await store.add_turn(alice.id, long.id, "x" * 500, "ok", "[]", "[]")
    titled = await store.create_session(alice.id, "mine")
    await store.add_turn(alice.id, titled.id, "something else", "ok", "[]", "[]")
    got_long = await store.get_session(alice.id, long.id)
    got_titled = await store.get_session(alice.id, titled.id)
    assert got_long is not None
    assert got_titled is not None
    assert len(got_long.title) == 60
    assert got_long.title.startswith("xxx")
    assert got_titled.title == "mine"
    assert len((await store.create_session(alice.id, "t" * 999)).title) == 200


async def test_most_recently_used_first(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    old = await store.create_session(alice.id, "old")
    new = await store.create_session(alice.id, "new")
    await asyncio.sleep(0.01)
    await store.add_turn(alice.id, old.id, "hi", "hello", "[]", "[]")
    assert [s.id for s in await store.list_sessions(alice.id)] == [old.id, new.id]


async def test_nul_in_text_is_kept_readable(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    chat = await store.create_session(alice.id)
    await store.add_turn(alice.id, chat.id, "a\x00b", "c\x00d", "[]", "[]")
    assert [m.content for m in await store.messages(alice.id, chat.id)] == ["a\ufffdb", "c\ufffdd"]


async def test_owner_scoping(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    chat = await store.create_session(alice.id, "alice's")
    await store.add_turn(alice.id, chat.id, "secret", "noted", "[]", '["secret"]')

    assert await store.get_session(bob.id, chat.id) is None
    assert await store.list_sessions(bob.id) == []
    assert await store.messages(bob.id, chat.id) == []
    assert await store.history(bob.id, chat.id) == []
    with pytest.raises(NotFound) as info:
        await store.add_turn(bob.id, chat.id, "mine now", "no", "[]", "[]")
    assert info.value.status_code == 404
    assert await store.delete_session(bob.id, chat.id) is False

    # nothing of alice's moved
    assert len(await store.messages(alice.id, chat.id)) == 2
    assert await store.get_session(alice.id, chat.id) is not None
    assert await store.history(alice.id, chat.id) == [b'["secret"]']


async def test_unknown_ids(store: Store) -> None:
    alice, _ = await store.create_user("alice")
    assert await store.get_session(alice.id, "s_0000000000000000") is None
    assert await store.messages(alice.id, "s_0000000000000000") == []
    with pytest.raises(NotFound):
        await store.add_turn(alice.id, "s_0000000000000000", "p", "a", "[]", "[]")
    with pytest.raises(NotFound):
        await store.create_session("u_0000000000000000")


async def test_deleting_a_session_deletes_its_messages(store: Store, raw: Engine) -> None:
    alice, _ = await store.create_user("alice")
    kept = await store.create_session(alice.id)
    doomed = await store.create_session(alice.id)
    for chat in (kept, doomed):
        await store.add_turn(alice.id, chat.id, "p", "a", "[]", "[]")
    assert await store.delete_session(alice.id, doomed.id)
    with raw.connect() as conn:
        rows = conn.execute(text("SELECT session_id FROM messages")).scalars().all()
    assert set(rows) == {kept.id}


async def test_deleting_a_user_deletes_their_sessions(store: Store, raw: Engine) -> None:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    for user in (alice, bob):
        chat = await store.create_session(user.id)
        await store.add_turn(user.id, chat.id, "p", "a", "[]", "[]")
    assert await store.delete_user(alice.id)

    with raw.connect() as conn:
        owners = conn.execute(text("SELECT user_id FROM sessions")).scalars().all()
        count = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
    assert owners == [bob.id]
    assert count == 2
    assert await store.list_sessions(alice.id) == []
