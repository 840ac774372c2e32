"""Round-robin between users, within the running limits."""

from __future__ import annotations

from dataclasses import dataclass

from agentcell.jobs.fairness import Turns, pick


@dataclass(frozen=True)
class J:
    id: str
    user_id: str


def queue(spec: str) -> list[J]:
    """'aab' -> a0, a1, b0 (oldest first, in that order)."""
    seen: dict[str, int] = {}
    jobs = []
    for user in spec:
        jobs.append(J(f"{user}{seen.get(user, 0)}", user))
        seen[user] = seen.get(user, 0) + 1
    return jobs


def drain(queued: list[J], *, free: int = 1, per_user: int = 1) -> list[str]:
    """Start jobs one slot at a time as each ends at once: the order they start in."""
    turns, order = Turns(), []
    while queued:
        chosen = pick(queued, {}, per_user=per_user, free=free, turns=turns)
        for job in chosen:
            queued.remove(job)
            turns.started(job.user_id)
            order.append(job.id)
    return order


def test_users_take_turns_whatever_they_queued_first() -> None:
    assert drain(queue("aaaaabbc")) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]


def test_a_user_who_just_started_goes_to_the_back() -> None:
    turns = Turns()
    turns.started("a")
    chosen = pick(queue("aabbcc"), {}, per_user=1, free=3, turns=turns)
    assert [j.id for j in chosen] == ["b0", "c0", "a0"]


def test_the_per_user_limit_counts_what_runs_already() -> None:
    chosen = pick(queue("aaabbb"), {"a": 2}, per_user=2, free=10, turns=Turns())
    assert [j.id for j in chosen] == ["b0", "b1"]


def test_no_more_than_the_free_slots() -> None:
    chosen = pick(queue("abcabc"), {}, per_user=5, free=4, turns=Turns())
    assert [j.id for j in chosen] == ["a0", "b0", "c0", "a1"]
    assert pick(queue("abc"), {}, per_user=5, free=0, turns=Turns()) == []


def test_shares_stay_even_for_fifty_users() -> None:
    queued = [J(f"{u}-{i}", f"u{u}") for i in range(20) for u in range(50)]
    queued.sort(key=lambda j: j.user_id)  # each user's jobs all together: the worst order
    first_half = drain(queued, free=4, per_user=2)[:500]
    counts = {u: sum(1 for j in first_half if j.startswith(f"{u}-")) for u in range(50)}
    assert set(counts.values()) == {10}
