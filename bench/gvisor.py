"""gVisor rows of the cells benchmark: the same cells under runc and under runsc, on one engine.

The engine is this machine's when runsc is registered with it (AGENTCELL_RUNTIME=runsc
scripts/setup), else a private engine of the tests' kind (tests/engines.py: root, dockerd and
runsc needed), so that the machine's engine is never reconfigured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
from rich.console import Console
from rich.table import Table

from agentcell.config import CellLimits, Settings
from agentcell.sandbox.manager import CellManager

FILE_BYTES = 2**20


@dataclass
class Pair:
    name: str
    runc: list[float]
    gvisor: list[float]


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def timed(n: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def why_not() -> str:
    """Why gVisor rows cannot be measured here ('' when they can)."""
    if shutil.which("runsc") is None:
        return "no runsc (scripts/setup installs it as root on Debian)"
    if engine_has_runsc():
        return ""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        return "runsc is not registered with this engine, and a private one needs root and dockerd"
    return ""


def engine_has_runsc() -> bool:
    with contextlib.closing(docker.from_env()) as client:
        return "runsc" in client.info().get("Runtimes", {})


@contextlib.contextmanager
def runsc_engine(image: str) -> Iterator[str | None]:
    """The docker_host of an engine with runsc (None: this machine's)."""
    if engine_has_runsc():
        yield None
        return
    from tests.engines import PrivateEngine  # the bench runs from the checkout (scripts/bench)
    from tests.gvisor import RUNSC, RUNSC_ARGS

    engine = PrivateEngine({"runtimes": {"runsc": {"path": RUNSC, "runtimeArgs": RUNSC_ARGS}}})
    try:
        engine.start()
        engine.load(image)
        yield engine.url
    finally:
        engine.destroy()


async def measure(settings: Settings, n: int, execs: int) -> dict[str, list[float]]:
    """Cold start (new user, no pool → first result), warm execs, a file round trip."""
    rows: dict[str, list[float]] = {}
    async with CellManager(settings) as m:
        try:
            cold = []
            for i in range(n):
                t0 = time.perf_counter()
                cell = await m.ensure(f"cold{i}")
                await cell.exec("print(1)")
                cold.append((time.perf_counter() - t0) * 1000)
                await m.remove(f"cold{i}", delete_workspace=True)
            rows["cold start: new user → first result (no pool)"] = cold
            warm = await m.ensure("warm")
            await warm.exec("print(0)")
            rows["warm exec print(1), python"] = await timed(execs, lambda: warm.exec("print(1)"))
            shell = await timed(execs // 4, lambda: warm.exec("true", language="shell"))
            rows["warm exec true, shell (a fork and exec)"] = shell
            data = os.urandom(FILE_BYTES)

            async def round_trip() -> None:
                await warm.files.write("blob.bin", data)
                assert await warm.files.read_bytes("blob.bin") == data

            rows["file: write + read back 1 MiB"] = await timed(n * 4, round_trip)
            rows["idle memory per cell, MiB (python context warm)"] = await idle_mib(m)
        finally:
            for info in await asyncio.to_thread(m.backend.list):
                await asyncio.to_thread(m.backend.remove, info.container_id)
            for ws in m.workspaces.ids():
                await asyncio.to_thread(m.workspaces.delete, ws)
    return rows


async def idle_mib(m: CellManager, cells: int = 3) -> list[float]:
    ids = []
    for i in range(cells):
        cell = await m.ensure(f"idle{i}")
        await cell.exec("print(1)")
        ids.append(cell.container_id)
    await asyncio.sleep(2)
    used = [await asyncio.to_thread(m.backend.memory_bytes, c) for c in ids]
    return [b / 2**20 for b in used if b is not None]


async def gvisor_rows(image: str, n: int, execs: int) -> list[Pair]:
    with runsc_engine(image) as url, tempfile.TemporaryDirectory(prefix="ac-gvisor-") as tmp:
        found = {}
        for runtime in ("", "runsc"):
            settings = Settings(
                data_dir=Path(tmp) / (runtime or "runc"),
                instance_id=f"bench-gvisor-{os.getpid()}-{runtime or 'runc'}",
                labels={"agentcell.bench": "1"},
                **({"docker_host": url} if url else {}),  # type: ignore[arg-type]
                runtime=runtime,
                image=image,
                pool_size=0,
                reap_interval_s=3600,
                limits=CellLimits(workspace_mb=256),
            )
            found[runtime] = await measure(settings, n, execs)
    return [Pair(name, found[""][name], found["runsc"][name]) for name in found[""]]


def render(console: Console, pairs: list[Pair]) -> None:
    table = Table(title="gVisor (runsc) beside runc, same engine (ms unless noted)")
    cols = ["what", "runc p50", "p95", "p99", "gVisor p50", "p95", "p99", "gVisor ÷ runc (p50)"]
    for col in cols:
        table.add_column(col, justify="left" if col == "what" else "right")
    for pair in pairs:
        runc = [pct(pair.runc, q) for q in (0.5, 0.95, 0.99)]
        gvisor = [pct(pair.gvisor, q) for q in (0.5, 0.95, 0.99)]
        ratio = f"{gvisor[0] / runc[0]:.1f}×"
        table.add_row(pair.name, *(f"{v:.2f}" for v in runc + gvisor), ratio)
    console.print(table)
