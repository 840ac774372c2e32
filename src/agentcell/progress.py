"""Progress of long work (image builds, downloads): the hook a step reports through, which the
CLI renders. Shared by the server's parts and the CLI, so it depends on nothing of either."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One step of long work, for the CLI to render."""

    step: str
    message: str = ""
    done: int | None = None
    total: int | None = None


ProgressHook = Callable[[ProgressEvent], None]


def no_progress(_: ProgressEvent) -> None:
    return None
