"""Code run in the caller's cell, answered whole or streamed. The cell audits every exec itself
(``sandbox.audit``); here each one is also counted (``ExecObserver``: the server's metrics)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from agentcell.config import Settings
from agentcell.errors import PayloadTooLarge
from agentcell.executor.client import ExecResult
from agentcell.executor.protocol import Exit, Language, Output
from agentcell.sandbox.service import CellHandle
from agentcell.services.cells import Cells, CellStream

ExecObserver = Callable[[str, bool, float], None]
"""Told of each exec's end: its language, whether it succeeded, how long it took (ms)."""


@dataclass(frozen=True)
class ExecCall:
    """What to run: the fields of ``POST /v1/cell/exec``."""

    code: str
    language: Language = "python"
    context: str = "default"
    timeout_s: float | None = None
    background: bool = False


class Execs:
    def __init__(self, cells: Cells, settings: Settings, observe: ExecObserver) -> None:
        self._cells, self._settings, self._observe = cells, settings, observe

    def _check(self, call: ExecCall) -> None:
        size = len(call.code.encode())
        if size > self._settings.max_code_bytes:
            raise PayloadTooLarge(
                f"code is {size} bytes; the limit is {self._settings.max_code_bytes}",
                hint="write large programs to a file in the workspace and run the file",
            )

    async def run(self, owner: str, call: ExecCall) -> ExecResult:
        """Run the code and answer its whole output, within the JSON output limit (the server
        holds it all). A caller that is cancelled stops the code in the cell."""
        self._check(call)
        async with self._cells.using(owner) as cell:
            started = time.perf_counter()
            try:
                result = await cell.exec(
                    call.code,
                    call.language,
                    context=call.context,
                    timeout_s=call.timeout_s,
                    output_limit=self._settings.json_output_limit_bytes,
                    background=call.background,
                )
            except BaseException:  # an error, or a caller that went away
                self._observe(call.language, False, (time.perf_counter() - started) * 1000)
                raise
        self._observe(call.language, result.exit_code == 0, result.duration_ms)
        return result

    async def stream(self, owner: str, call: ExecCall) -> CellStream[Output | Exit]:
        """Run the code, its output as it comes and the ``Exit`` last. Closing the stream
        early stops the code in the cell."""
        self._check(call)
        return await self._cells.stream(owner, lambda cell: self._events(cell, call))

    async def _events(
        self, cell: CellHandle, call: ExecCall
    ) -> AsyncGenerator[Output | Exit, None]:
        started = time.perf_counter()
        observed = False
        try:
            async for event in cell.stream(
                call.code,
                call.language,
                context=call.context,
                timeout_s=call.timeout_s,
                background=call.background,
            ):
                if isinstance(event, Exit):
                    # Counted before the last event goes out: a client may hang up right after.
                    duration_ms = (time.perf_counter() - started) * 1000
                    self._observe(call.language, event.exit_code == 0, duration_ms)
                    observed = True
                yield event
        finally:
            if not observed:  # an error, or a client that went away (which stopped the code)
                self._observe(call.language, False, (time.perf_counter() - started) * 1000)
