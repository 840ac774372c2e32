"""Egress policies, the admin's network rules and secrets in the store, on SQLite and
PostgreSQL: owner scoping, replacing, going back to the default, what goes with the user."""

from __future__ import annotations

import pytest

from agentcell.errors import NotFound
from agentcell.schemas import AdminNetwork, NetworkPolicy
from agentcell.store import Store


async def _users(store: Store) -> tuple[str, str]:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    return alice.id, bob.id


async def test_a_users_policy_is_theirs_and_goes_back_to_the_default(store: Store) -> None:
    alice, bob = await _users(store)
    assert await store.network_policy(alice) is None
    mine = NetworkPolicy(mode="allowlist", allow=["*.wikipedia.org"], deny=["ads.example.com"])
    await store.set_network_policy(alice, mine)
    assert await store.network_policy(alice) == mine
    assert await store.network_policy(bob) is None
    wider = NetworkPolicy(mode="public", deny=["ads.example.com"])
    await store.set_network_policy(alice, wider)
    assert await store.network_policy(alice) == wider
    await store.set_network_policy(alice, None)
    assert await store.network_policy(alice) is None
    await store.set_network_policy(alice, None)  # twice: no error


async def test_a_policy_for_nobody_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.set_network_policy("u_nobody", NetworkPolicy(mode="public"))


async def test_the_admins_network_is_kept_and_replaced(store: Store) -> None:
    assert await store.admin_network() is None
    first = AdminNetwork(default=NetworkPolicy(mode="allowlist", allow=["index.example.org"]))
    await store.set_admin_network(first)
    assert await store.admin_network() == first
    second = AdminNetwork(ceiling="public", ports=[8443, 22])
    await store.set_admin_network(second)
    assert await store.admin_network() == second
    assert second.ports == [22, 8443]


async def test_secrets_are_scoped_replaced_and_deleted(store: Store) -> None:
    alice, bob = await _users(store)
    first = await store.put_secret(
        alice, "GITHUB_TOKEN", sealed=b"\x01sealed", placeholder="ph-1", hosts=["api.github.com"]
    )
    await store.put_secret(
        bob, "GITHUB_TOKEN", sealed=b"\x01bob", placeholder="ph-b", hosts=["x.org"]
    )
    again = await store.put_secret(
        alice, "GITHUB_TOKEN", sealed=b"\x01new", placeholder="ph-2", hosts=["*.github.com"]
    )
    assert again.placeholder == "ph-1"  # programs running hold the first one
    assert again.created_at == first.created_at
    [row] = await store.secrets(alice)
    assert (row.name, row.sealed, row.hosts) == ("GITHUB_TOKEN", b"\x01new", '["*.github.com"]')
    [other] = await store.secrets(bob)
    assert other.sealed == b"\x01bob"
    assert not await store.delete_secret(alice, "NOPE")
    assert await store.delete_secret(alice, "GITHUB_TOKEN")
    assert await store.secrets(alice) == []
    assert len(await store.secrets(bob)) == 1


async def test_a_deleted_user_takes_their_policy_and_secrets(store: Store) -> None:
    alice, bob = await _users(store)
    await store.set_network_policy(alice, NetworkPolicy(mode="public"))
    await store.put_secret(alice, "K", sealed=b"s", placeholder="p", hosts=["a.org"])
    await store.delete_user(alice)
    assert await store.network_policy(alice) is None
    assert await store.secrets(alice) == []
    with pytest.raises(NotFound):
        await store.put_secret(alice, "K", sealed=b"s", placeholder="p", hosts=["a.org"])
