"""Which queued jobs start next: round-robin between users, within the running limits.

Each user's jobs start oldest first. Users take turns: the one whose job started longest ago
(or never, here) goes first, one job per user per round, so a user with a thousand queued jobs
gets the same share of free slots as a user with one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar


class Queued(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def user_id(self) -> str: ...


J = TypeVar("J", bound=Queued)


@dataclass
class Turns:
    """The order users take turns in: a user moves to the back when a job of theirs starts."""

    _last: dict[str, int] = field(default_factory=dict)  # user -> the round they last started
    _clock: int = 0

    def started(self, user_id: str) -> None:
        self._clock += 1
        self._last[user_id] = self._clock

    def order(self, users: Iterable[str]) -> list[str]:
        return sorted(users, key=lambda u: self._last.get(u, 0))

    def forget(self, keep: Iterable[str]) -> None:
        """Drop users who have nothing queued any more (the table stays small)."""
        keep = set(keep)
        self._last = {u: n for u, n in self._last.items() if u in keep}


def pick(
    queued: Sequence[J],
    running: Mapping[str, int],
    *,
    per_user: int,
    free: int,
    turns: Turns,
) -> list[J]:
    """The jobs to start now, in order, from ``queued`` (oldest first): at most ``free`` in
    all, none for a user who has ``per_user`` running already. Does not change ``turns``."""
    by_user: dict[str, list[J]] = defaultdict(list)
    for job in queued:
        by_user[job.user_id].append(job)
    room = {u: per_user - running.get(u, 0) for u in by_user}
    order = [u for u in turns.order(by_user) if room[u] > 0]
    chosen: list[J] = []
    while order and len(chosen) < free:
        for user in list(order):
            if len(chosen) == free:
                break
            chosen.append(by_user[user].pop(0))
            room[user] -= 1
            if room[user] == 0 or not by_user[user]:
                order.remove(user)
    return chosen
