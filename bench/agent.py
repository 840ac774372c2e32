"""The agent's own overhead per tool call: the time a turn spends outside the model and outside
the cell. A scripted model (FunctionModel) answers instantly with run_python('print(1)') calls;
the same code through Cell.exec, in the same run and the same context, is the baseline.

Usage: .venv/bin/python bench/agent.py [--quick]. Prints p50/p95/p99 in ms and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from rich.console import Console
from rich.table import Table

from agentcell.agent.events import ToolCall, ToolResult
from agentcell.agent.runner import run_turn
from agentcell.config import Settings
from agentcell.sandbox.manager import CellManager

console = Console(width=200)
CODE = "print(1)"


@dataclass
class Row:
    name: str
    samples_ms: list[float]
    note: str = ""

    def pct(self, q: float) -> float:
        s = sorted(self.samples_ms)
        return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def model(calls: int, per_step: int) -> FunctionModel:
    """Coordinator: delegate once, then answer. Coder: ``calls`` run_python calls, ``per_step``
    in each response, then a final answer."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        tools = {t.name for t in info.function_tools}
        made = sum(
            isinstance(p, ToolCallPart)
            for m in messages
            if isinstance(m, ModelResponse)
            for p in m.parts
        )
        if "delegate_coder" in tools:
            if made == 0:
                return ModelResponse(parts=[ToolCallPart("delegate_coder", {"task": "bench"})])
            return ModelResponse(parts=[TextPart("done")])
        if made >= calls:
            return ModelResponse(parts=[TextPart("done")])
        n = min(per_step, calls - made)
        return ModelResponse(parts=[ToolCallPart("run_python", {"code": CODE}) for _ in range(n)])

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        for i, part in enumerate(script(messages, info).parts):
            if isinstance(part, TextPart):
                yield part.content
            elif isinstance(part, ToolCallPart):
                yield {i: DeltaToolCall(part.tool_name, part.args_as_json_str())}

    return FunctionModel(script, stream_function=stream)


async def agent_rows(manager: CellManager, calls: int, per_step: int) -> tuple[Row, Row, float]:
    """Per tool call: ToolCall→ToolResult event, and ToolResult→next ToolResult (a whole step
    of the agent loop: model answer processed, tool run, result sent back)."""
    cell = await manager.ensure("bench")
    started: dict[str, float] = {}
    tool_ms: list[float] = []
    step_ms: list[float] = []
    last = None
    t0 = time.perf_counter()
    async for event in run_turn(
        settings=manager.settings,
        cell=cell,
        session_id=f"bench{per_step}",
        prompt="bench",
        history=[],
        model=model(calls, per_step),
    ):
        now = time.perf_counter()
        if isinstance(event, ToolCall):
            started[event.call_id] = now
        elif isinstance(event, ToolResult):
            tool_ms.append((now - started[event.call_id]) * 1000)
            if last is not None:
                step_ms.append((now - last) * 1000)
            last = now
    total_ms = (time.perf_counter() - t0) * 1000
    label = f"{per_step} call{'s' if per_step > 1 else ''} per model answer"
    queue = "a batch's calls are all announced first" if per_step > 1 else ""
    k = max(1, len(step_ms) // 10)
    first, latest = Row("", step_ms[:k]), Row("", step_ms[-k:])
    growth = f"p50 of the first {k}: {first.pct(0.5):.2f}, of the last {k}: {latest.pct(0.5):.2f}"
    return (
        Row(f"agent: tool call event → result ({label})", tool_ms, queue),
        Row(f"agent: one tool call in the loop ({label})", step_ms, growth),
        total_ms / calls,
    )


async def raw_row(manager: CellManager, n: int) -> Row:
    cell = await manager.ensure("bench")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await cell.exec(CODE, context="s-bench1", env={})
        samples.append((time.perf_counter() - t0) * 1000)
    return Row("baseline: Cell.exec print(1), same context", samples)


def render(raw: Row, rows: list[tuple[Row, Row, float]]) -> None:
    table = Table(title="agentcell agent overhead per tool call (ms)")
    cols = ("what", "p50", "p95", "p99", "n", "overhead p50 (− raw p50)", "× raw (p50)", "note")
    for col in cols:
        table.add_column(col, justify="left" if col == "what" else "right")
    base = raw.pct(0.5)

    def add(row: Row, overhead: bool) -> None:
        p50 = row.pct(0.5)
        table.add_row(
            row.name,
            f"{p50:.2f}",
            f"{row.pct(0.95):.2f}",
            f"{row.pct(0.99):.2f}",
            str(len(row.samples_ms)),
            f"{p50 - base:.2f}" if overhead else "",
            f"{p50 / base:.1f}×" if overhead else "",
            row.note,
        )

    add(raw, overhead=False)
    for tool, step, mean in rows:
        add(tool, overhead=True)
        add(step, overhead=True)
        table.add_row(f"  whole turn / tool calls: {mean:.2f} ms", *[""] * 7)
    console.print(table)


async def main(quick: bool) -> None:
    calls = 50 if quick else 500
    with tempfile.TemporaryDirectory(prefix="agentcell-bench-agent-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            instance_id=f"bench-agent-{os.getpid()}",
            labels={"agentcell.bench": "1"},
            pool_size=0,
            reap_interval_s=3600,
            agent_max_requests=0,
            agent_max_tool_calls=0,
        )
        async with CellManager(settings) as manager:
            try:
                await raw_row(manager, 20)  # warm up the context
                rows = [await agent_rows(manager, calls, 1), await agent_rows(manager, calls, 10)]
                raw = await raw_row(manager, calls)
            finally:
                for info in await asyncio.to_thread(manager.backend.list):
                    await asyncio.to_thread(manager.backend.remove, info.container_id)
                for cell_id in manager.backend.storage_ids():
                    await asyncio.to_thread(manager.backend.delete_storage, cell_id)
    render(raw, rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 tool calls instead of 500")
    asyncio.run(main(parser.parse_args().quick))
