"""Fair sharing between users: a request rate per user (token buckets), a tighter rate for
lifecycle churn (restart and delete of a cell), and a cap on the calls one user keeps running
in their cell at once. Counted in this server's memory: each API process keeps its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from agentcell.config import Settings
from agentcell.errors import RateLimited

MAX_BUCKETS = 100_000  # full buckets are dropped past this: a full bucket is no bucket


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class Buckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    what: str  # "requests", "cell restarts and deletes": the 429's words
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: str) -> None:
        """Spend a token of ``key``'s, or raise RateLimited saying when one will be there."""
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        wait = (1 - bucket.tokens) / self.rate
        raise RateLimited(
            f"too many {self.what}: the limit is {self.rate:g} a second "
            f"(bursts of {self.burst:g}) per user",
            retry_after_s=wait,
        )

    def _prune(self, now: float) -> None:
        self._buckets = {
            k: b
            for k, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * self.rate < self.burst
        }


@dataclass
class Running:
    """How many calls each user has running in their cell, capped at ``limit``."""

    limit: int
    _counts: dict[str, int] = field(default_factory=dict)

    def acquire(self, key: str) -> None:
        count = self._counts.get(key, 0)
        if count >= self.limit:
            raise RateLimited(
                f"you already have {count} calls running in your cell; "
                f"the limit is {self.limit} at once",
                retry_after_s=1.0,
                hint="wait for one to finish (or stop one), then retry",
            )
        self._counts[key] = count + 1

    def release(self, key: str) -> None:
        left = self._counts[key] - 1
        if left:
            self._counts[key] = left
        else:
            del self._counts[key]

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)


@dataclass
class Limits:
    """What app.state.limits holds, made from the settings."""

    requests: Buckets
    lifecycle: Buckets
    running: Running

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            requests=Buckets(settings.rate_limit_per_s, settings.rate_limit_burst, "requests"),
            lifecycle=Buckets(
                settings.lifecycle_limit_per_min / 60,
                settings.lifecycle_burst,
                "cell restarts and deletes",
            ),
            running=Running(settings.max_running_per_user),
        )
