"""Cost curves (DESIGN §8): how latency and memory grow with idle cells, and throughput with
concurrent users, against one real `agentcell serve` started here, beside docker baselines
measured in the same run.

Usage: scripts/bench scale [--quick] [--cells-max N] [--users-max N]. Prints two tables and
writes a plot to bench/results/scale-<time>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from rich.table import Table

from agentcell.sandbox.docker.backend import cgroup_memory_bytes
from bench.api import (
    bucket_quantile,
    console,
    docker_exec_baseline,
    exec_buckets,
    free_port,
    pct,
    remove_users,
    rss_mib,
    start_server,
    warm_exec,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CELL_STEPS = (10, 50, 100, 200, 500, 1000)
USER_STEPS = (1, 10, 50, 100, 200)
MIB = 2**20
RESERVE_MIB = 3 * 1024  # the host keeps this much available: growth stops before it
GUESS_MIB_PER_CELL = 100.0  # the safety check's cost of a cell before one is measured
MAKE_PARALLEL = 8  # cells made at once: fast, yet not a start storm on 2 cores
WARM_EXECS = 200
CROWD_EXECS = 20
CELL_MEMORY_MB = 512  # the default limit (CellLimits.memory_mb), for the admission budget
# Idle cells must stay running for the whole curve: no pause, stop or removal by the reaper.
IDLE_ENV = {
    "AGENTCELL_IDLE_PAUSE_S": "86400",
    "AGENTCELL_IDLE_STOP_S": "172800",
    "AGENTCELL_IDLE_REMOVE_S": "259200",
}


def steps(base: tuple[int, ...], cap: int) -> list[int]:
    return [s for s in base if s < cap] + [cap]


# --- the host: /proc readings ----------------------------------------------------------------


def meminfo_mib() -> dict[str, float]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0]) / 1024
    return out


def host_used_mib() -> float:
    m = meminfo_mib()
    return m["MemTotal"] - m["MemAvailable"]


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, comm, argv) of every process still there when read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            comm = (entry / "comm").read_text().strip()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            yield int(entry.name), comm, argv


def pid_of(comm: str) -> int | None:
    return next((pid for pid, c, _ in processes() if c == comm), None)


def shim_rss(container_ids: set[str]) -> tuple[float, int]:
    """Average RSS (MiB) of the containerd shims of these containers, and how many were found:
    Docker runs one shim a container (``-id <container id>``); others' shims are left out."""
    found = []
    for pid, comm, argv in processes():
        is_shim = comm.startswith("containerd-shim") or "containerd-shim" in argv[0]
        if is_shim and "-id" in argv and argv[argv.index("-id") + 1] in container_ids:
            found.append(rss_mib(pid))
    return (sum(found) / len(found) if found else 0.0), len(found)


def fd_count(pid: int | None) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()) if pid else 0


def max_open_files(pid: int | None) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if pid else []:
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft} (hard {hard})"
    return "?"


def cpu_seconds(pid: int) -> float:
    # Fields after the ")" of comm: utime and stime are the 12th and 13th, in clock ticks.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def limits_table(server_pid: int, budget_mb: int) -> Table:
    table = Table(title="limits that bound the number of cells")
    table.add_column("limit")
    table.add_column("value")
    rows = [
        ("server: Max open files (ulimit -n)", max_open_files(server_pid)),
        ("dockerd: Max open files", max_open_files(pid_of("dockerd"))),
    ]
    for name in (
        "fs/inotify/max_user_instances",
        "fs/inotify/max_user_watches",
        "kernel/pid_max",
        "kernel/threads-max",
        "net/core/somaxconn",
    ):
        value = Path(f"/proc/sys/{name}").read_text().strip()
        rows.append((name.replace("/", "."), value))
    total = meminfo_mib()["MemTotal"]
    default = int(total) - 1024  # Settings.host_memory_reserve_mb
    rows.append(
        (
            "admission budget (host_memory_mb)",
            f"default MemTotal − 1024 = {default} MiB = {default // CELL_MEMORY_MB} cells of "
            f"{CELL_MEMORY_MB} MiB; lifted to {budget_mb} MiB here (this script's "
            f"MemAvailable guard stops growth instead)",
        )
    )
    for name, value in rows:
        table.add_row(name, value)
    return table


# --- the server: making cells ----------------------------------------------------------------


@dataclass
class Server:
    url: str
    pid: int
    admin: dict[str, str]
    client: httpx.Client
    keys: list[str] = field(default_factory=list)  # users with a cell, in order made
    first_error: str = ""
    made_s: float = 0.0  # seconds the last make_cells took

    def cells(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.client.get("/v1/admin/cells", headers=self.admin).json()
        return [c for c in found if c["owner"] and c["state"] == "running"]


async def _make(url: str, admin: dict[str, str], first: int, count: int) -> tuple[list[str], str]:
    """Users first..first+count-1, each with a cell (an exec of ``pass``), MAKE_PARALLEL at a
    time; returns their keys and the first error (after which no more are started)."""
    keys: list[str] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(MAKE_PARALLEL)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, timeout=timeout) as session:

        async def one(i: int) -> None:
            async with gate:
                if errors:
                    return
                try:
                    async with session.post(
                        "/v1/users", json={"name": f"scale{i}"}, headers=admin
                    ) as r:
                        if r.status not in (200, 201):
                            errors.append(f"POST /v1/users: {r.status} {(await r.text())[:300]}")
                            return
                        key = (await r.json())["api_key"]
                    headers = {"Authorization": f"Bearer {key}"}
                    async with session.post(
                        "/v1/cell/exec", json={"code": "pass"}, headers=headers
                    ) as r:
                        if r.status != 200:
                            errors.append(f"first exec: {r.status} {(await r.text())[:300]}")
                            return
                    keys.append(key)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"cell {i}: {exc!r}")

        await asyncio.gather(*(one(i) for i in range(first, first + count)))
    return keys, errors[0] if errors else ""


def grow(server: Server, target: int, per_cell_mib: float) -> str:
    """Make cells up to ``target``, unless the host would keep under RESERVE_MIB or making
    fails; returns why it stopped short, or ""."""
    have = len(server.keys)
    if target <= have:
        return ""
    available = meminfo_mib()["MemAvailable"]
    left = available - (target - have) * per_cell_mib
    if left < RESERVE_MIB:
        return (
            f"stopped before {target} cells: {target - have} more at {per_cell_mib:.0f} MiB "
            f"each would leave {left:.0f} MiB of {available:.0f} available (< {RESERVE_MIB})"
        )
    t0 = time.perf_counter()
    keys, error = asyncio.run(_make(server.url, server.admin, have, target - have))
    server.made_s = time.perf_counter() - t0
    server.keys += keys
    if error:
        server.first_error = server.first_error or error
        return f"cell creation failed at {len(server.keys)} cells: {error}"
    return ""


# --- the cells curve -------------------------------------------------------------------------


@dataclass
class CellsRow:
    cells: int
    exec_ms: list[float]
    server_rss: float
    host_per_cell: float  # host memory used, growth since before the first cell, per cell
    cgroup_per_cell: float
    shim_per_cell: float
    shims: int
    dockerd_rss: float
    containerd_rss: float
    dockerd_fds: int
    server_fds: int
    available: float
    made_s: float


def measure_cells(server: Server, base_used: float) -> CellsRow:
    exec_ms = warm_exec(server.client, server.keys[0], WARM_EXECS)
    cells = server.cells()
    memory = [c["memory_bytes"] / MIB for c in cells if c["memory_bytes"] is not None]
    shim, shims = shim_rss({c["container_id"] for c in cells})
    dockerd, containerd = pid_of("dockerd"), pid_of("containerd")
    n = len(cells)
    return CellsRow(
        cells=n,
        exec_ms=exec_ms,
        server_rss=rss_mib(server.pid),
        host_per_cell=(host_used_mib() - base_used) / n if n else 0.0,
        cgroup_per_cell=sum(memory) / len(memory) if memory else 0.0,
        shim_per_cell=shim,
        shims=shims,
        dockerd_rss=rss_mib(dockerd) if dockerd else 0.0,
        containerd_rss=rss_mib(containerd) if containerd else 0.0,
        dockerd_fds=fd_count(dockerd),
        server_fds=fd_count(server.pid),
        available=meminfo_mib()["MemAvailable"],
        made_s=server.made_s,
    )


def per_cell_cost(rows: list[CellsRow]) -> float:
    """What one more cell costs the host, as seen so far (never below the guess's floor of a
    cell's own cgroup and shim, since the host's delta is noisy at a few cells)."""
    if not rows:
        return GUESS_MIB_PER_CELL
    last = rows[-1]
    return max(last.host_per_cell, last.cgroup_per_cell + last.shim_per_cell, 1.0)


def cells_curve(server: Server, targets: list[int], base_used: float) -> tuple[list[CellsRow], str]:
    rows: list[CellsRow] = []
    measured = 0  # users with a cell at the last row (a row's own count is of running cells)
    for target in targets:
        stop = grow(server, target, per_cell_cost(rows))
        if len(server.keys) > measured:
            measured = len(server.keys)
            console.print(f"  {len(server.keys)} idle cells: measuring…")
            rows.append(measure_cells(server, base_used))
        if stop:
            return rows, stop
    return rows, ""


@dataclass
class Baseline:
    exec_ms: list[float]
    sleep_mib: float
    sleep_shim_mib: float
    image: str


def baseline(container_id: str) -> Baseline:
    """``docker exec`` into a cell, and a plain ``sleep`` container of the cells' image."""
    exec_ms = docker_exec_baseline(container_id, 20)
    image = subprocess.run(
        ["docker", "inspect", container_id, "--format", "{{.Config.Image}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    name = f"agentcell-bench-scale-sleep-{os.getpid()}"
    run = ["docker", "run", "-d", "--rm", "--network", "none", "--name", name]
    sleeper = subprocess.run(
        [*run, "--label", "agentcell.bench=1", image, "sleep", "600"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        time.sleep(2)  # past its start
        memory = cgroup_memory_bytes(sleeper)
        shim, _ = shim_rss({sleeper})
    finally:
        subprocess.run(["docker", "rm", "-f", sleeper], capture_output=True)
    return Baseline(exec_ms, (memory or 0) / MIB, shim, image)


# --- the users curve -------------------------------------------------------------------------


@dataclass
class UsersRow:
    users: int
    samples: list[float]
    errors: list[str]
    wall_s: float
    server_p50: str
    server_p99: str
    cpu_ms_per_exec: float


async def _crowd(url: str, keys: list[str], execs: int) -> dict[str, Any]:
    """Each user on a keep-alive connection of its own, ``execs`` in a row, all at once."""
    samples: list[float] = []
    errors: list[str] = []
    timeout = aiohttp.ClientTimeout(total=300)
    sessions = [
        aiohttp.ClientSession(
            url,
            connector=aiohttp.TCPConnector(limit=1),
            headers={"Authorization": f"Bearer {k}"},
            timeout=timeout,
        )
        for k in keys
    ]

    async def call(session: aiohttp.ClientSession, j: int) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post("/v1/cell/exec", json={"code": f"print({j})"}) as r:
                body = await r.json()
                if r.status != 200 or body.get("stdout") != f"{j}\n":
                    errors.append(f"{r.status} {str(body)[:200]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(repr(exc))
        samples.append((time.perf_counter() - t0) * 1000)

    async def user(session: aiohttp.ClientSession) -> None:
        for j in range(execs):
            await call(session, j)

    try:
        await asyncio.gather(*(call(s, 0) for s in sessions))  # connected and warm, unclocked
        samples.clear()
        errors.clear()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go": the parent has read its counters
        t0 = time.perf_counter()
        await asyncio.gather(*(user(s) for s in sessions))
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return {"samples": samples, "errors": errors, "wall_s": wall}


def crowd_child() -> None:
    """The users' side of a crowd step, in a process of its own so that its client work does
    not share the measuring process's GIL: {url, keys, execs} on stdin, the result on stdout."""
    job = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(_crowd(job["url"], job["keys"], job["execs"]))), flush=True)


def crowd_step(server: Server, keys: list[str]) -> UsersRow:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.scale", "--crowd-child"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin
    assert child.stdout
    try:
        child.stdin.write(json.dumps({"url": server.url, "keys": keys, "execs": CROWD_EXECS}))
        child.stdin.write("\n")
        child.stdin.flush()
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the crowd process failed (exit {child.wait()})")
        before = exec_buckets(server.client)
        cpu0 = cpu_seconds(server.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
        cpu1 = cpu_seconds(server.pid)  # before /metrics, whose own work is not an exec's
        after = exec_buckets(server.client)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    execs = len(result["samples"])
    return UsersRow(
        users=len(keys),
        samples=result["samples"],
        errors=result["errors"],
        wall_s=result["wall_s"],
        server_p50=bucket_quantile(before, after, 0.5) if after else "?",
        server_p99=bucket_quantile(before, after, 0.99) if after else "?",
        cpu_ms_per_exec=(cpu1 - cpu0) * 1000 / execs if execs else 0.0,
    )


def users_curve(
    server: Server, targets: list[int], cells: list[CellsRow]
) -> tuple[list[UsersRow], str]:
    rows: list[UsersRow] = []
    for target in targets:
        stop = grow(server, target, per_cell_cost(cells))
        if len(server.keys) < target:
            return rows, stop or f"only {len(server.keys)} cells for {target} users"
        console.print(f"  {target} users × {CROWD_EXECS} execs…")
        rows.append(crowd_step(server, server.keys[:target]))
    return rows, ""


# --- output ----------------------------------------------------------------------------------


def cells_table(rows: list[CellsRow], base: Baseline | None, note: str) -> Table:
    caption = (
        "baseline: docker exec … print(1) into a cell (20 runs, at the first step); a plain "
        "`sleep` container of the cells' image. host Δ: MemTotal − MemAvailable since the server "
        "started, per cell. shim: containerd-shim RSS (shims found)."
    )
    table = Table(
        title="idle cells: what one more costs (ms, MiB)", caption=f"{caption}\n{note}".strip()
    )
    for col in (
        "cells",
        "exec p50",
        "exec p99",
        "server RSS",
        "host Δ/cell",
        "cgroup/cell",
        "shim/cell",
        "dockerd RSS",
        "containerd RSS",
        "fds dockerd",
        "fds server",
        "MemAvailable",
        "made in s",
    ):
        table.add_column(col, justify="right")
    if base:
        table.add_row(
            "baseline",
            f"{pct(base.exec_ms, 0.5):.1f}",
            f"{pct(base.exec_ms, 0.99):.1f}",
            "",
            "",
            f"{base.sleep_mib:.1f}",
            f"{base.sleep_shim_mib:.1f}",
        )
    for r in rows:
        table.add_row(
            str(r.cells),
            f"{pct(r.exec_ms, 0.5):.2f}",
            f"{pct(r.exec_ms, 0.99):.2f}",
            f"{r.server_rss:.0f}",
            f"{r.host_per_cell:.1f}",
            f"{r.cgroup_per_cell:.1f}",
            f"{r.shim_per_cell:.1f} ({r.shims})",
            f"{r.dockerd_rss:.0f}",
            f"{r.containerd_rss:.0f}",
            str(r.dockerd_fds),
            str(r.server_fds),
            f"{r.available:.0f}",
            f"{r.made_s:.1f}",
        )
    return table


def users_table(rows: list[UsersRow], base: Baseline | None, note: str) -> Table:
    caption = (
        "baseline: docker exec, one after another. server p50/p99: the bucket of /metrics; "
        "server CPU: its utime+stime over the step's execs (10 ms ticks: coarse at few execs)."
    )
    table = Table(
        title=f"concurrent users, {CROWD_EXECS} execs each in a row (ms)",
        caption=f"{caption}\n{note}".strip(),
    )
    for col in (
        "users",
        "execs",
        "execs/s",
        "client p50",
        "client p99",
        "errors",
        "server p50",
        "server p99",
        "server CPU ms/exec",
    ):
        table.add_column(col, justify="right")
    if base:
        p50 = pct(base.exec_ms, 0.5)
        mean = sum(base.exec_ms) / len(base.exec_ms)
        table.add_row(
            "baseline",
            str(len(base.exec_ms)),
            f"{1000 / mean:.1f}",
            f"{p50:.1f}",
            f"{pct(base.exec_ms, 0.99):.1f}",
        )
    for r in rows:
        table.add_row(
            str(r.users),
            str(len(r.samples)),
            f"{len(r.samples) / r.wall_s:.0f}",
            f"{pct(r.samples, 0.5):.1f}",
            f"{pct(r.samples, 0.99):.1f}",
            str(len(r.errors)),
            r.server_p50,
            r.server_p99,
            f"{r.cpu_ms_per_exec:.2f}",
        )
    return table


def plot(cells: list[CellsRow], users: list[UsersRow], base: Baseline | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (lat, mem), (rss, crowd) = axes
    n = [r.cells for r in cells]
    lat.plot(n, [pct(r.exec_ms, 0.5) for r in cells], "o-", label="p50")
    lat.plot(n, [pct(r.exec_ms, 0.99) for r in cells], "o-", label="p99")
    if base:
        lat.axhline(pct(base.exec_ms, 0.5), ls="--", c="grey", label="docker exec p50")
    lat.set(title="warm exec over HTTP", xlabel="idle cells", ylabel="ms", yscale="log")
    mem.plot(n, [r.cgroup_per_cell for r in cells], "o-", label="cgroup")
    mem.plot(n, [r.shim_per_cell for r in cells], "o-", label="containerd-shim")
    mem.plot(n, [r.host_per_cell for r in cells], "o-", label="host used Δ")
    if base:
        mem.axhline(base.sleep_mib, ls="--", c="grey", label="sleep container")
    mem.set(title="memory per cell", xlabel="idle cells", ylabel="MiB")
    rss.plot(n, [r.server_rss for r in cells], "o-", label="server")
    rss.plot(n, [r.dockerd_rss for r in cells], "o-", label="dockerd")
    rss.plot(n, [r.containerd_rss for r in cells], "o-", label="containerd")
    rss.set(title="process RSS", xlabel="idle cells", ylabel="MiB")
    u = [r.users for r in users]
    crowd.plot(u, [len(r.samples) / r.wall_s for r in users], "o-", c="C0", label="execs/s")
    crowd.set(title="concurrent users", xlabel="users", ylabel="execs/s")
    p99 = crowd.twinx()
    p99.plot(u, [pct(r.samples, 0.99) for r in users], "s--", c="C3", label="client p99")
    p99.set_ylabel("p99 ms")
    for ax in (lat, mem, rss, crowd):
        ax.set_xscale("log")  # the steps grow about tenfold: 10 … 1000 cells, 1 … 200 users
    for ax in (lat, mem, rss, crowd, p99):
        ax.legend(loc="upper left" if ax is not p99 else "upper right", fontsize="small")
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"scale-{datetime.now():%Y%m%d-%H%M%S}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the run ---------------------------------------------------------------------------------


def leftovers(data: Path) -> None:
    """When the server could not remove its cells: their containers go by name, and the loop
    mounts of their workspaces (else the data dir's removal would reach into them)."""
    name = f"agentcell-bench-api-{os.getpid()}"  # start_server's instance id
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name={name}"], capture_output=True, text=True
    ).stdout.split()
    if found:
        subprocess.run(["docker", "rm", "-f", *found], capture_output=True)
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith(str(data)):
            subprocess.run(["umount", "-l", target], capture_output=True)


def main(cell_targets: list[int], user_targets: list[int]) -> None:
    budget = (max(cell_targets[-1], user_targets[-1]) + 10) * CELL_MEMORY_MB
    with tempfile.TemporaryDirectory(prefix="agentcell-bench-scale-") as tmp:
        data, port = Path(tmp), free_port()
        proc = start_server(
            data, port, extra_env={**IDLE_ENV, "AGENTCELL_HOST_MEMORY_MB": str(budget)}
        )
        base_used = host_used_mib()  # with the server up, before its cells: theirs only
        admin = {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}
        cells: list[CellsRow] = []
        users: list[UsersRow] = []
        base: Baseline | None = None
        cells_note = users_note = ""
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, timeout=120)
        server = Server(url, proc.pid, admin, client)
        try:
            console.print(limits_table(proc.pid, budget))
            console.print(f"idle cells up to {cell_targets[-1]}…")
            cells, cells_note = cells_curve(server, cell_targets[:1], base_used)
            if server.keys:
                console.print("docker baselines…")
                base = baseline(server.cells()[0]["container_id"])
            if not cells_note:
                more, cells_note = cells_curve(server, cell_targets[1:], base_used)
                cells += more
            console.print(f"concurrent users up to {user_targets[-1]}…")
            users, users_note = users_curve(server, user_targets, cells)
        finally:
            console.print(f"removing {len(server.keys)} users and their cells…")
            try:
                remove_users(client, admin)
            except (httpx.HTTPError, OSError) as exc:
                console.print(f"[red]the server could not remove them ({exc!r}): by docker[/]")
                leftovers(data)
            client.close()
            proc.terminate()
            proc.wait(timeout=30)
    if server.first_error:
        cells_note += f"\nfirst error: {server.first_error}"
    console.print(cells_table(cells, base, cells_note.strip()))
    console.print(users_table(users, base, users_note))
    for r in users:
        if r.errors:
            console.print(f"{r.users} users, first errors:", r.errors[:3])
    if cells and users:
        console.print(f"plot: {plot(cells, users, base).relative_to(REPO)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 and 20 cells; 1 and 10 users")
    parser.add_argument("--cells-max", type=int, default=CELL_STEPS[-1])
    parser.add_argument("--users-max", type=int, default=USER_STEPS[-1])
    parser.add_argument("--crowd-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crowd_child:
        crowd_child()
    elif args.quick:
        main([10, 20], [1, 10])
    else:
        main(steps(CELL_STEPS, args.cells_max), steps(USER_STEPS, args.users_max))
