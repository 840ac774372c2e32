"""Cell benchmarks (DESIGN §8, the rows that need no HTTP), beside docker baselines of the same run.

Usage: scripts/bench cells [--quick] [--gvisor-only]. Prints a table: p50/p95/p99 in ms, and
ratios to the baselines; then gVisor's rows beside runc's, where runsc can run (bench/gvisor.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from rich.console import Console
from rich.table import Table

from agentcell.config import CellLimits, Settings
from agentcell.executor.protocol import Output
from agentcell.sandbox.base import CellState
from agentcell.sandbox.docker.images import ensure_image
from agentcell.sandbox.manager import CellManager
from bench import gvisor

console = Console(width=200)
LABELS = {"agentcell.bench": "1"}


@dataclass
class Row:
    name: str
    samples_ms: list[float]
    target: str = ""
    baseline: str = ""
    note: str = ""

    def pct(self, q: float) -> float:
        s = sorted(self.samples_ms)
        return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


async def timed(n: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(ms_since(t0))
    return out


def docker_cli(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def baseline_docker_run(image: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        docker_cli("run", "--rm", "--network", "none", image, "python3", "-c", "print(1)")
        samples.append(ms_since(t0))
    return samples


def baseline_docker_exec(container: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        docker_cli("exec", container, "python3", "-c", "print(1)")
        samples.append(ms_since(t0))
    return samples


def settings(data_dir: Path, pool: int) -> Settings:
    return Settings(
        data_dir=data_dir,
        instance_id=f"bench-{os.getpid()}-{pool}",
        labels=LABELS,
        pool_size=pool,
        reap_interval_s=3600,
        limits=CellLimits(workspace_mb=256),
    )


async def wait_pool(m: CellManager, size: int) -> None:
    while m.pool_size < size:
        await asyncio.sleep(0.01)


async def destroy(m: CellManager) -> None:
    for info in await asyncio.to_thread(m.backend.list):
        await asyncio.to_thread(m.backend.remove, info.container_id)
    for cell_id in m.backend.storage_ids():
        await asyncio.to_thread(m.backend.delete_storage, cell_id)


async def new_user_rows(root: Path, n: int) -> list[Row]:
    rows = []
    for pool in (1, 0):
        m = CellManager(settings(root / f"pool{pool}", pool))
        async with m:
            samples = []
            for i in range(n):
                await wait_pool(m, pool)
                t0 = time.perf_counter()
                cell = await m.ensure(f"new{i}")
                await cell.exec("print(1)")
                samples.append(ms_since(t0))
        await destroy(m)  # after close: the pool no longer refills
        label = "with pool" if pool else "no pool"
        target = "p50 ≤ 50" if pool else "p50 ≤ 300"
        rows.append(Row(f"new user → first result ({label})", samples, target, "docker run"))
    return rows


async def wake_rows(m: CellManager, n: int) -> list[Row]:
    cell = await m.ensure("sleeper")
    paused, stopped = [], []
    for i in range(n):
        await m.reap(now=time.time() + m.settings.idle_pause_s + 1)
        assert cell.state is CellState.PAUSED
        t0 = time.perf_counter()
        await cell.exec("print(1)")
        paused.append(ms_since(t0))
        if i < max(3, n // 2):
            await m.reap(now=time.time() + m.settings.idle_stop_s + 1)
            assert cell.state is CellState.STOPPED
            t0 = time.perf_counter()
            await cell.exec("print(1)")
            stopped.append(ms_since(t0))
    return [
        Row("wake from paused → result", paused, "≤ 50"),
        Row("wake from stopped → result", stopped, "≤ 500"),
    ]


async def crowd_row(m: CellManager, users: int, execs: int) -> tuple[Row, list[str]]:
    t0 = time.perf_counter()
    cells = await asyncio.gather(*(m.ensure(f"crowd{u}") for u in range(users)))
    created_s = ms_since(t0) / 1000
    samples: list[float] = []
    errors: list[str] = []

    async def user(cell_index: int) -> None:
        for j in range(execs):
            t1 = time.perf_counter()
            try:
                r = await cells[cell_index].exec(f"print({j})")
                if r.stdout != f"{j}\n":
                    errors.append(f"wrong output {r.stdout!r}")
            except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                errors.append(repr(exc))
            samples.append(ms_since(t1))

    await asyncio.gather(*(user(i) for i in range(users)))
    note = f"{len(errors)} errors; {users} cells created in {created_s:.1f} s"
    return Row(
        f"{users} users × {execs} execs at once", samples, "0 errors, p99 ≤ 100", "", note
    ), [c.container_id for c in cells]


async def idle_memory_row(m: CellManager, container_ids: list[str]) -> Row:
    await asyncio.sleep(2)
    mem = [await asyncio.to_thread(m.backend.memory_bytes, c) for c in container_ids]
    mib = [b / 2**20 for b in mem if b is not None]
    note = f"MiB, median {statistics.median(mib):.1f} over {len(mib)} cells (python context warm)"
    return Row("idle memory per running cell", mib, "≤ 16 MiB", "", note)


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE") / 2**20


async def stdout_row(m: CellManager) -> Row:
    cell = await m.ensure("loud")
    code = "import sys\nfor _ in range(160): sys.stdout.write('x' * 65535 + '\\n')"
    samples, peak_growth = [], 0.0
    for _ in range(3):
        before = rss_mib()
        received = 0
        t0 = time.perf_counter()
        async for event in cell.stream(code):
            if isinstance(event, Output):
                received += len(event.data)
                peak_growth = max(peak_growth, rss_mib() - before)
        samples.append(ms_since(t0))
        assert received == 160 * 65536
    return Row(
        "10 MB of stdout, streamed", samples, "memory flat", "", f"host RSS +{peak_growth:.1f} MiB"
    )


BURN = (
    "import multiprocessing as mp\ndef spin():\n    while True: pass\n"
    "ps = [mp.Process(target=spin) for _ in range(4)]\n[p.start() for p in ps]\n"
    "[p.join() for p in ps]"
)
FSYNC_FLOOD = (
    "import os\nfd = os.open('/workspace/flood', os.O_WRONLY | os.O_CREAT)\n"
    "while True:\n    os.write(fd, b'x' * 4096)\n    os.fsync(fd)"
)


async def churn(m: CellManager, stop: asyncio.Event) -> None:
    """Another user's container churn: a cell created, used, removed, again."""
    while not stop.is_set():
        cell = await m.ensure("churner")
        await cell.exec("print(1)")
        await m.remove("churner")


async def neighbour_rows(m: CellManager, n: int) -> list[Row]:
    bob, mallory = await asyncio.gather(m.ensure("bob"), m.ensure("mallory"))
    await bob.exec("print(0)")
    quiet = await timed(n, lambda: bob.exec("print(1)"))
    rows = [Row("neighbour warm exec, quiet host", quiet, "", "docker exec")]
    for what, code in (("burning 4 CPUs", BURN), ("flooding fsyncs", FSYNC_FLOOD)):
        load = asyncio.create_task(mallory.exec(code, timeout_s=600))
        await asyncio.sleep(1)
        busy = await timed(n, lambda: bob.exec("print(1)"))
        load.cancel()
        await mallory.interrupt()
        name = f"neighbour warm exec, one cell {what}"
        rows.append(Row(name, busy, "p99 ≈ quiet", "docker exec"))
    stop = asyncio.Event()
    churning = asyncio.create_task(churn(m, stop))
    await asyncio.sleep(1)
    busy = await timed(n, lambda: bob.exec("print(1)"))
    stop.set()
    await churning
    name = "neighbour warm exec, another user churning cells"
    rows.append(Row(name, busy, "p99 ≈ quiet", "docker exec"))
    return rows


def render(rows: list[Row], docker_run: Row, docker_exec: Row) -> None:
    table = Table(title="agentcell cells benchmark (ms unless noted)")
    for col in ("what", "p50", "p95", "p99", "n", "vs baseline (p50)", "target", "note"):
        table.add_column(col, justify="right" if col in ("p50", "p95", "p99", "n") else "left")
    base = {"docker run": docker_run.pct(0.5), "docker exec": docker_exec.pct(0.5)}
    for row in [docker_run, docker_exec, *rows]:
        ratio = ""
        if row.baseline:
            ratio = f"{base[row.baseline] / row.pct(0.5):.1f}× faster than {row.baseline}"
        table.add_row(
            row.name,
            f"{row.pct(0.5):.2f}",
            f"{row.pct(0.95):.2f}",
            f"{row.pct(0.99):.2f}",
            str(len(row.samples_ms)),
            ratio,
            row.target,
            row.note,
        )
    console.print(table)


async def gvisor_section(image: str, quick: bool) -> None:
    if reason := gvisor.why_not():
        console.print(f"gVisor rows skipped: {reason}")
        return
    console.print("gVisor beside runc…")
    n, execs = (5, 200) if quick else (20, 1000)
    gvisor.render(console, await gvisor.gvisor_rows(image, n, execs))


async def main(quick: bool, gvisor_only: bool) -> None:
    if gvisor_only:
        with contextlib.closing(docker.from_env()) as client:
            image = ensure_image(client, "minimal", lambda _event: None)
        await gvisor_section(image, quick)
        return
    n = 5 if quick else 20
    with tempfile.TemporaryDirectory(prefix="agentcell-bench-") as tmp:
        root = Path(tmp)
        async with CellManager(settings(root / "main", 0)) as m:
            try:
                console.print(f"image {m.image}; baselines…")
                docker_run = Row(
                    "baseline: docker run --rm … print(1)", baseline_docker_run(m.image, n)
                )
                warm = await m.ensure("warm")
                await warm.exec("print(0)")
                docker_exec = Row(
                    "baseline: docker exec … print(1)",
                    baseline_docker_exec(warm.container_id, n * 2),
                )
                console.print("warm exec…")
                rows = [
                    Row(
                        "warm exec print(1), Python API",
                        await timed(200 if quick else 2000, lambda: warm.exec("print(1)")),
                        "p50 ≤ 1",
                        "docker exec",
                    )
                ]
                console.print("neighbours…")
                rows += await neighbour_rows(m, 50 if quick else 200)
                console.print("wake…")
                rows += await wake_rows(m, n)
                console.print("10 MB stdout…")
                rows.append(await stdout_row(m))
                console.print("crowd…")
                crowd, ids = await crowd_row(m, 10 if quick else 50, 20)
                rows.append(crowd)
                rows.append(await idle_memory_row(m, ids))
            finally:
                await destroy(m)
        console.print("new users…")
        rows += await new_user_rows(root, n)
    render(rows, docker_run, docker_exec)
    await gvisor_section(m.image, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, 10 users")
    parser.add_argument("--gvisor-only", action="store_true", help="only the gVisor rows")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.gvisor_only))
