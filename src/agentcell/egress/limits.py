"""Per-user limits of egress: connections open at once (past it: refused), and bytes a minute
through the proxy, both ways together (past it: paced, never cut)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


class TooManyConnections(Exception):
    """The user's cell has as many connections open through the proxy as it may."""


@dataclass
class Bucket:
    """A token bucket of bytes: ``rate`` a second, holding at most ``burst``."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def take(self, n: int) -> float:
        """Count n bytes; the seconds to wait before the next ones (0: go on)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate) - n
        self.at = now
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Unmetered:
    def take(self, n: int) -> float:  # noqa: ARG002
        return 0.0


class EgressLimits:
    def __init__(self, connections_per_user: int, bytes_per_minute: int) -> None:
        self.connections_per_user = connections_per_user
        self.bytes_per_minute = bytes_per_minute
        self.open_connections: dict[str, int] = {}
        self.buckets: dict[str, Bucket] = {}

    @contextlib.contextmanager
    def open(self, owner: str) -> Iterator[Bucket | Unmetered]:
        """One connection of the owner's for the block, with their byte budget;
        TooManyConnections past their count."""
        count = self.open_connections.get(owner, 0)
        if count >= self.connections_per_user:
            raise TooManyConnections(
                f"your cell has {count} connections open through the proxy, the most it may"
            )
        self.open_connections[owner] = count + 1
        try:
            yield self._bucket(owner)
        finally:
            left = self.open_connections[owner] - 1
            if left:
                self.open_connections[owner] = left
            else:  # the bucket stays: closing connections does not refill it
                del self.open_connections[owner]

    def _bucket(self, owner: str) -> Bucket | Unmetered:
        if not self.bytes_per_minute:
            return Unmetered()
        bucket = self.buckets.get(owner)
        if bucket is None:
            rate = self.bytes_per_minute / 60
            # A second's worth at once (at least 256 KiB), so that short requests go unpaced.
            burst = max(rate, 256 * 1024.0)
            bucket = self.buckets[owner] = Bucket(rate, burst, tokens=burst)
        return bucket
