"""Users and API keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from agentcell.errors import Conflict, InvalidRequest
from agentcell.store import Store


async def test_create_list_get_delete(store: Store) -> None:
    before = datetime.now(UTC)
    bob, _ = await store.create_user("bob")
    alice, _ = await store.create_user("alice")

    assert bob.id.startswith("u_")
    assert bob.id != alice.id
    assert bob.name == "bob"
    assert bob.created_at.tzinfo is not None
    assert bob.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= bob.created_at <= datetime.now(UTC)
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]

    got = await store.get_user(bob.id)
    assert got is not None
    assert (got.id, got.name, got.key_prefix) == (bob.id, "bob", bob.key_prefix)
    assert got.created_at == bob.created_at
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)

    assert await store.delete_user(bob.id) is True
    assert await store.get_user(bob.id) is None
    assert await store.delete_user(bob.id) is False
    assert [u.name for u in await store.list_users()] == ["alice"]


async def test_unknown_ids(store: Store) -> None:
    assert await store.get_user("u_0000000000000000") is None
    assert await store.delete_user("u_0000000000000000") is False


async def test_duplicate_name_is_a_conflict(store: Store) -> None:
    await store.create_user("alice")
    with pytest.raises(Conflict) as info:
        await store.create_user("alice")
    assert info.value.status_code == 409
    assert info.value.code == "conflict"
    assert "alice" in info.value.message
    assert len(await store.list_users()) == 1


async def test_concurrent_same_name_makes_one_user(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_user("carol") for _ in range(5)), return_exceptions=True
    )
    made = [r for r in results if isinstance(r, tuple)]
    assert len(made) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, tuple))
    assert [u.name for u in await store.list_users()] == ["carol"]


@pytest.mark.parametrize(
    "name",
    ["", "Alice", "-bob", ".bob", "_bob", "a" * 65, "alice\n", "al ice", "älice", "a/b", "a:b"],
)
async def test_invalid_names(store: Store, name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await store.create_user(name)
    assert info.value.status_code == 400
    assert "lowercase letters, digits" in info.value.hint
    assert await store.list_users() == []


@pytest.mark.parametrize("name", ["a", "0", "a" * 64, "a.b-c_d", "9lives"])
async def test_valid_names(store: Store, name: str) -> None:
    user, _ = await store.create_user(name)
    assert user.name == name


async def test_key_lookup(store: Store) -> None:
    alice, alice_key = await store.create_user("alice")
    bob, bob_key = await store.create_user("bob")

    assert alice_key.startswith("ac_")
    assert len(alice_key) == 3 + 43
    assert alice_key != bob_key
    assert alice.key_prefix == alice_key[:8]

    found = await store.user_by_key(alice_key)
    assert found is not None
    assert found.id == alice.id
    found = await store.user_by_key(bob_key)
    assert found is not None
    assert found.id == bob.id

    for wrong in ["", "ac_", alice_key[:-1], alice_key + "x", alice.key_hash, alice.id]:
        assert await store.user_by_key(wrong) is None

    await store.delete_user(alice.id)
    assert await store.user_by_key(alice_key) is None


async def test_key_is_stored_only_as_a_hash(store: Store, raw: Engine) -> None:
    user, key = await store.create_user("alice")
    with raw.connect() as conn:
        rows = conn.execute(text("SELECT * FROM users")).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert row["key_prefix"] == key[:8]
    secret = key[8:]  # all of the key but the displayed prefix
    for column, value in row.items():
        assert key not in str(value), column
        assert secret not in str(value), column
    assert user.key_hash == row["key_hash"]
