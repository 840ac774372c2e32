"""Turn locks, on SQLite and PostgreSQL: one holder per session, leases that run out, and
locks that go with their session."""

from __future__ import annotations

import asyncio

import pytest

from agentcell.errors import NotFound
from agentcell.store import Store

LEASE_S = 60.0


async def _session(store: Store, name: str = "alice") -> tuple[str, str]:
    user, _ = await store.create_user(name)
    chat = await store.create_session(user.id)
    return user.id, chat.id


async def test_one_holder_at_a_time(store: Store) -> None:
    owner, session_id = await _session(store)
    _, other_session = await _session(store, "bob")
    assert await store.claim_turn(owner, session_id, "t_first", LEASE_S) is True
    assert await store.claim_turn(owner, session_id, "t_second", LEASE_S) is False
    assert await store.claim_turn(owner, session_id, "t_first", LEASE_S) is False  # no re-entry
    assert await store.renew_turns(["t_first", "t_second"], LEASE_S) == {"t_first"}

    await store.release_turn(session_id, "t_second")  # not its lock: nothing happens
    assert await store.claim_turn(owner, session_id, "t_third", LEASE_S) is False
    await store.release_turn(session_id, "t_first")
    assert await store.claim_turn(owner, session_id, "t_third", LEASE_S) is True
    assert await store.renew_turns(["t_first", "t_third"], LEASE_S) == {"t_third"}
    assert await store.renew_turns([], LEASE_S) == set()
    assert other_session != session_id


async def test_only_the_owner_claims_and_only_existing_sessions(store: Store) -> None:
    owner, session_id = await _session(store)
    bob, _ = await _session(store, "bob")
    with pytest.raises(NotFound):
        await store.claim_turn(bob, session_id, "t_bob", LEASE_S)
    with pytest.raises(NotFound):
        await store.claim_turn(owner, "s_nope", "t_x", LEASE_S)
    assert await store.claim_turn(owner, session_id, "t_alice", LEASE_S) is True


async def test_an_expired_lease_is_taken_over(store: Store) -> None:
    """A server that died stops renewing: once its lease has run out, another server may run
    a turn in the session, and the dead one's late release or renewal changes nothing."""
    owner, session_id = await _session(store)
    assert await store.claim_turn(owner, session_id, "t_dead", LEASE_S) is True
    assert await store.claim_turn(owner, session_id, "t_next", LEASE_S) is False
    assert await store.renew_turns(["t_dead"], -1) == {"t_dead"}  # its lease ran out
    assert await store.claim_turn(owner, session_id, "t_next", LEASE_S) is True

    assert await store.renew_turns(["t_dead"], LEASE_S) == set()  # it lost the lock
    await store.release_turn(session_id, "t_dead")
    assert await store.claim_turn(owner, session_id, "t_third", LEASE_S) is False


async def test_racing_servers_one_wins(db_url: str, store: Store) -> None:
    """Claims from several connections at once (a server each): exactly one gets the lock,
    also when the lock they race for has expired."""
    owner, session_id = await _session(store)
    servers = [await Store.open(db_url) for _ in range(6)]
    try:
        for round_ in range(2):
            claims = (
                s.claim_turn(owner, session_id, f"t_{round_}_{n}", LEASE_S)
                for n, s in enumerate(servers)
            )
            won = await asyncio.gather(*claims)
            assert won.count(True) == 1, won
            [winner] = [f"t_{round_}_{n}" for n, ok in enumerate(won) if ok]
            assert await store.renew_turns([winner], -1) == {winner}  # let it expire
    finally:
        for s in servers:
            await s.close()


async def test_a_deleted_session_takes_its_lock_along(store: Store) -> None:
    owner, session_id = await _session(store)
    assert await store.claim_turn(owner, session_id, "t_1", LEASE_S) is True
    assert await store.delete_session(owner, session_id) is True
    assert await store.renew_turns(["t_1"], LEASE_S) == set()
    with pytest.raises(NotFound):
        await store.claim_turn(owner, session_id, "t_2", LEASE_S)
    await store.release_turn(session_id, "t_1")  # the end of the lost turn: no error
