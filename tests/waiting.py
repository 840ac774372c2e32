"""Polls under deadlines, for tests that wait until something is so (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

DEADLINE_S = 30.0


async def until(
    what: str, check: Callable[[], bool | Awaitable[bool]], timeout_s: float = DEADLINE_S
) -> None:
    """Return once ``check()`` holds; fail the test if it does not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        ok = check()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(0.05)


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    """``until`` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.05)
