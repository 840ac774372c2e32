"""Memory of this process as tests measure it: the resident size now, and its peak over a
block (a delta of these can fail after an earlier test, unlike ru_maxrss, a lifetime peak)."""

from __future__ import annotations

import threading
from pathlib import Path


def rss() -> int:
    """This process's resident memory now (not its lifetime peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Peak:
    """The highest RSS seen while the block runs, sampled every 10 ms."""

    def __init__(self) -> None:
        self.value = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.value = max(self.value, rss())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
