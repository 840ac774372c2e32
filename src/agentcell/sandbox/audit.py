"""Every exec a cell runs is audited, whoever started it: ``Cell.exec`` and ``Cell.stream`` go
through ``audited``, so a new caller cannot forget. The sink (``ExecAudit``, the store in a
server) writes a row when the exec starts and completes it when the exec ends: a server killed
in between leaves a row that says the exec never finished.

Who started it comes from ``started_by``, a context variable: "api" unless the caller set
another (the agent's runner sets "agent:<session id>" for its turn, /mcp's exec tool "mcp").
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from types import TracebackType
from typing import Protocol

from agentcell.errors import AgentcellError

started_by: ContextVar[str] = ContextVar("agentcell_exec_started_by", default="api")


class ExecAudit(Protocol):
    def exec_started(self, owner: str, started_by: str, language: str, code: str) -> str:
        """Record an exec that starts now; returns its reference for ``exec_ended``."""
        ...

    def exec_ended(
        self, ref: str, *, exit_code: int | None, duration_ms: float, ok: bool, error: str = ""
    ) -> None:
        """Complete the exec's record with its outcome."""
        ...


class audited:  # noqa: N801 - used as a context manager, like contextlib's
    """``with audited(sink, owner, language, code) as record: ... record.exit(code, ...)``.

    Leaving without ``exit`` (an error, a cancelled call, a stream closed early) records
    the exec as failed, with why.
    """

    def __init__(self, sink: ExecAudit | None, owner: str, language: str, code: str) -> None:
        self.sink = sink
        self.owner, self.language, self.code = owner, language, code
        self.ref = ""
        self.started = 0.0
        self.exit_code: int | None = None
        self.note = ""
        self.ended = self.timed_out = False

    def __enter__(self) -> audited:
        self.started = time.perf_counter()
        if self.sink is not None:
            self.ref = self.sink.exec_started(
                self.owner, started_by.get(), self.language, self.code
            )
        return self

    def exit(self, exit_code: int, *, timed_out: bool = False, context_reset: bool = False) -> None:
        """The exec ended with this exit code."""
        self.ended, self.exit_code, self.timed_out = True, exit_code, timed_out
        notes = (["timed out"] if timed_out else []) + (["context reset"] if context_reset else [])
        self.note = ", ".join(notes)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.sink is None:
            return
        error = self.note
        if exc is not None:
            error = _why(exc)
        elif not self.ended:
            error = "stopped before its end"
        ok = exc is None and self.ended and self.exit_code == 0 and not self.timed_out
        duration_ms = (time.perf_counter() - self.started) * 1000
        self.sink.exec_ended(
            self.ref, exit_code=self.exit_code, duration_ms=duration_ms, ok=ok, error=error
        )


def _why(exc: BaseException) -> str:
    if isinstance(exc, AgentcellError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "stopped: the caller went away"
    return f"{type(exc).__name__}: {exc}"
