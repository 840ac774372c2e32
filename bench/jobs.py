"""Jobs benchmarks (DESIGN §8), against a real `agentcell serve` started here, beside an exec
of the same code over HTTP in the same run.

Rows: POST → running (the job's first output on a follower, and the server's created → started
times); many short jobs from many users at once (throughput, and each user's share of the first
half of the completions: round-robin should make them equal); log follow latency (a line
written in the cell → received by the client over SSE).

Usage: scripts/bench jobs [--quick].
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

from bench.api import free_port, pct, remove_users, start_server

console = Console(width=200)
SSE = {"Accept": "text/event-stream"}


def stamp(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def exec_baseline(http: httpx.Client, n: int) -> list[float]:
    body = {"language": "shell", "code": "echo x"}
    http.post("/v1/cell/exec", json=body).raise_for_status()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        http.post("/v1/cell/exec", json=body).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def post_to_running(http: httpx.Client, n: int) -> tuple[list[float], list[float]]:
    """For each of n jobs one after another: POST → its first output on a follower (client
    clock), and created_at → started_at (server clock)."""
    client, server = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        made = http.post("/v1/jobs", json={"kind": "exec", "language": "shell", "code": "echo x"})
        made.raise_for_status()
        job_id = made.json()["id"]
        with http.stream("GET", f"/v1/jobs/{job_id}/logs", headers=SSE) as r:
            for line in r.iter_lines():
                if line.startswith("event: log"):
                    client.append((time.perf_counter() - t0) * 1000)
                    break
        while (got := http.get(f"/v1/jobs/{job_id}").json())["state"] == "running":
            time.sleep(0.01)
        server.append((stamp(got["started_at"]) - stamp(got["created_at"])) * 1000)
    return client, server


async def many_jobs(
    url: str, keys: list[str], per_user: int
) -> tuple[float, list[int], list[int], int]:
    """Every user submits ``per_user`` short jobs at once; wall time (s) until all ended, each
    user's count among the first half of the completions and of the starts, how many failed."""
    connector = aiohttp.TCPConnector(limit=len(keys) * 2 + 5)
    async with aiohttp.ClientSession(url, connector=connector) as http:

        async def submit(key: str) -> None:
            headers = {"Authorization": f"Bearer {key}"}
            for _ in range(per_user):
                body = {"kind": "exec", "language": "shell", "code": "true"}
                async with http.post("/v1/jobs", json=body, headers=headers) as r:
                    assert r.status == 201, await r.text()

        async def finished(key: str) -> list[dict[str, object]]:
            headers = {"Authorization": f"Bearer {key}"}
            while True:
                async with http.get("/v1/jobs?limit=1000", headers=headers) as r:
                    jobs = (await r.json())["jobs"]
                if all(j["state"] not in ("queued", "running") for j in jobs):
                    return list(jobs)
                await asyncio.sleep(0.5)

        t0 = time.perf_counter()
        await asyncio.gather(*(submit(k) for k in keys))
        queued_all = time.time()  # from here every user has all their jobs queued
        everyone = await asyncio.gather(*(finished(k) for k in keys))
        wall = time.perf_counter() - t0
    failed = sum(1 for jobs in everyone for j in jobs if j["state"] != "succeeded")
    ends = first_half_shares(everyone, "ended_at", queued_all)
    return wall, ends, first_half_shares(everyone, "started_at", queued_all), failed


def first_half_shares(
    everyone: list[list[dict[str, object]]], when: str, after: float
) -> list[int]:
    """Of the jobs that started once every job was queued (before that, a user whose next
    POST had not arrived had nothing to start), how many of the first half by ``when`` each
    user had."""
    times = sorted(
        (stamp(str(j[when])), user)
        for user, jobs in enumerate(everyone)
        for j in jobs
        if stamp(str(j["started_at"])) >= after
    )
    first_half = Counter(user for _, user in times[: len(times) // 2])
    return [first_half.get(u, 0) for u in range(len(everyone))]


def follow_latency(http: httpx.Client, lines: int) -> list[float]:
    """A job prints its clock every 20 ms; each line's age when the follower gets it."""
    code = (
        "import time\n"
        f"for _ in range({lines}):\n"
        "    print(repr(time.time()), flush=True)\n"
        "    time.sleep(0.02)\n"
    )
    made = http.post("/v1/jobs", json={"kind": "exec", "language": "python", "code": code})
    made.raise_for_status()
    ages = []
    pending = ""
    with http.stream("GET", f"/v1/jobs/{made.json()['id']}/logs", headers=SSE) as r:
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "log":
                now = time.time()
                pending += json.loads(line[6:])["text"]
                *done, pending = pending.split("\n")
                ages += [(now - float(t)) * 1000 for t in done if t]
            elif line.startswith("data: ") and event == "end":
                break
    return ages


def main(quick: bool) -> None:
    users, per_user = (10, 20) if quick else (50, 20)
    n = 30 if quick else 200
    with tempfile.TemporaryDirectory(prefix="agentcell-bench-jobs-") as tmp:
        data = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # 256 MiB cells: 50 users' cells fit this 24 GiB host's admission budget.
        env = {"AGENTCELL_JOBS_PER_USER_MAX": str(per_user), "AGENTCELL_LIMITS__MEMORY_MB": "256"}
        proc = start_server(data, port, extra_env=env)
        try:
            admin = {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}
            with httpx.Client(base_url=url, timeout=120) as client:
                keys = [
                    client.post("/v1/users", json={"name": f"u{i}"}, headers=admin).json()[
                        "api_key"
                    ]
                    for i in range(users + 1)
                ]
            auth = {"Authorization": f"Bearer {keys[0]}"}
            with httpx.Client(base_url=url, timeout=120, headers=auth) as http:
                console.print("exec baseline over HTTP…")
                base = exec_baseline(http, n)
                console.print("POST → running…")
                to_first_output, to_started = post_to_running(http, n)
                console.print("log follow latency…")
                ages = follow_latency(http, 100 if quick else 500)
            console.print(f"{users} users × {per_user} short jobs…")
            with httpx.Client(base_url=url, timeout=120) as client:
                for key in keys[1:]:  # cells made before the clock starts
                    body = {"code": "print(0)"}
                    client.post(
                        "/v1/cell/exec", json=body, headers={"Authorization": f"Bearer {key}"}
                    )
            wall, shares, start_shares, failed = asyncio.run(many_jobs(url, keys[1:], per_user))
            with httpx.Client(base_url=url, timeout=120) as client:
                remove_users(client, admin)
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    table = Table(title="agentcell jobs benchmark (ms)")
    for col in ("what", "p50", "p95", "p99", "n", "vs exec (p50)", "target", "note"):
        table.add_column(col)
    b50 = pct(base, 0.5)
    for name, samples, target, note in (
        ("baseline: exec `echo x` over HTTP", base, "", ""),
        ("POST → first output on a follower", to_first_output, "", "client clock"),
        ("POST → running (created_at → started_at)", to_started, "p50 ≤ 20", "server clock"),
        ("log follow: written in the cell → on the client", ages, "p99 ≤ 50", "SSE"),
    ):
        table.add_row(
            name,
            f"{pct(samples, 0.5):.2f}",
            f"{pct(samples, 0.95):.2f}",
            f"{pct(samples, 0.99):.2f}",
            str(len(samples)),
            f"{pct(samples, 0.5) / b50:.2f}×",
            target,
            note,
        )
    console.print(table)
    total = users * per_user
    console.print(
        f"{total} short jobs from {users} users: {wall:.1f} s wall, {total / wall:.0f} jobs/s, "
        f"{failed} not succeeded"
    )
    for what, counts in (("completions", shares), ("starts", start_shares)):
        mean = sum(counts) / len(counts)
        spread = max(abs(c - mean) / mean for c in counts) * 100
        console.print(
            f"  each user's share of the first half of the {what} (jobs started once all were "
            f"queued): min {min(counts)}, "
            f"max {max(counts)}, mean {mean:.1f}, largest deviation {spread:.0f} % "
            "(target: within 20 %)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
