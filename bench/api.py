"""HTTP API benchmarks (DESIGN §8), against a real `agentcell serve` process started here,
beside a `docker exec` baseline measured in the same run.

Usage: scripts/bench api [--quick]. Prints p50/p95/p99 in ms and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

console = Console(width=200)
Samples = list[float]


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, port: int, limited: bool = False, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``agentcell serve`` on port, with ``extra_env`` on top; its rate limiter is off unless
    ``limited`` (latency is measured here, not the limiter, except in the neighbour row)."""
    env = {
        **os.environ,
        # Admission counts each cell at its limit (512 MiB): 46 here, fewer than the crowd.
        # Idle cells use ~17 MiB; what is measured is latency, not admission.
        "AGENTCELL_HOST_MEMORY_MB": "1000000",
        **(extra_env or {}),
        "AGENTCELL_DATA_DIR": str(data_dir),
        "AGENTCELL_INSTANCE_ID": f"bench-api-{os.getpid()}",
        "AGENTCELL_LABELS": '{"agentcell.bench": "1"}',
        "AGENTCELL_POOL_SIZE": "0",
        "AGENTCELL_LIMITS__WORKSPACE_MB": "128",
    }
    if not limited:
        env |= {"AGENTCELL_RATE_LIMIT_PER_S": "1000000", "AGENTCELL_RATE_LIMIT_BURST": "1000000"}
    cmd = [sys.executable, "-m", "agentcell.cli", "serve", "--port", str(port)]
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start; see {data_dir / 'server.log'}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def docker_exec_baseline(container: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(
            ["docker", "exec", container, "python3", "-c", "print(1)"],
            check=True,
            capture_output=True,
        )
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def warm_exec(client: httpx.Client, key: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    client.post("/v1/cell/exec", json={"code": "print(0)"}, headers=headers).raise_for_status()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post("/v1/cell/exec", json={"code": "print(1)"}, headers=headers)
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.json()["stdout"] == "1\n"
    return samples


def warm_exec_stdlib(port: int, key: str, n: int) -> list[float]:
    """As ``warm_exec``, with the standard library's keep-alive client: httpx's own work per
    request (~1 ms here) is not the server's."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = json.dumps({"code": "print(1)"})
    samples = []
    try:
        for _ in range(n + 1):  # the first one connects
            t0 = time.perf_counter()
            conn.request("POST", "/v1/cell/exec", body, headers)
            answer = conn.getresponse().read()
            samples.append((time.perf_counter() - t0) * 1000)
            assert json.loads(answer)["stdout"] == "1\n", answer
    finally:
        conn.close()
    return samples[1:]


async def crowd(url: str, keys: list[str], execs: int) -> tuple[list[float], list[str]]:
    """Every user at once, each running ``execs`` in a row. aiohttp, not httpx: at 50
    concurrent requests httpx's own overhead on this 2-core machine was most of the latency."""
    samples: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=len(keys) + 5)
    async with aiohttp.ClientSession(url, connector=connector) as client:

        async def call(key: str, j: int) -> None:
            headers = {"Authorization": f"Bearer {key}"}
            async with client.post(
                "/v1/cell/exec", json={"code": f"print({j})"}, headers=headers
            ) as r:
                body = await r.json()
                if r.status != 200 or body.get("stdout") != f"{j}\n":
                    errors.append(f"{r.status} {str(body)[:100]}")

        async def user(key: str) -> None:
            for j in range(execs):
                t0 = time.perf_counter()
                try:
                    await call(key, j)
                except aiohttp.ClientError as exc:
                    errors.append(repr(exc))
                samples.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(call(k, 0) for k in keys))  # cells are made before the clock
        samples.clear()
        await asyncio.gather(*(user(k) for k in keys))
    return samples, errors


def exec_buckets(client: httpx.Client) -> dict[float, float]:
    """The server's own latency histogram of POST /v1/cell/exec (cumulative counts by bound)."""
    found = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("agentcell_http_request_duration_seconds_bucket") and (
            'route="/v1/cell/exec"' in line
        ):
            bound = line.split('le="')[1].split('"')[0]
            found[float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The histogram bucket (upper bound, ms) holding quantile q of the requests in between."""
    counts = {b: after[b] - before.get(b, 0.0) for b in sorted(after)}
    total = counts[max(counts)]
    for bound, count in counts.items():
        if count >= q * total:
            return f"≤ {bound * 1000:g}"
    return "?"


def server_quantiles(before: dict[float, float], after: dict[float, float]) -> str:
    p50, p99 = bucket_quantile(before, after, 0.5), bucket_quantile(before, after, 0.99)
    return f"server side p50 {p50}, p99 {p99} ms"


class PeakRss:
    """A process's RSS in MiB: before the block, its peak (sampled every 10 ms) and after."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = self.after = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self.before = self.peak = rss_mib(self.pid)
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._sampler.join()
        self.after = rss_mib(self.pid)


def stream_memory(client: httpx.Client, key: str, pid: int) -> tuple[float, float, float]:
    """Stream 10 MB of stdout through SSE; return (ms, RSS before, peak RSS) of the server."""
    code = "import sys\nfor _ in range(160): sys.stdout.write('x' * 65535 + '\\n')"
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    received = 0
    with PeakRss(pid) as rss:
        t0 = time.perf_counter()
        with client.stream("POST", "/v1/cell/exec", json={"code": code}, headers=headers) as r:
            for chunk in r.iter_bytes():
                received += len(chunk)
        elapsed = (time.perf_counter() - t0) * 1000
    assert received > 10 * 2**20, received
    return elapsed, rss.before, rss.peak


async def _json_floods(url: str, key: str, parallel: int) -> list[bool]:
    code = "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))\n"
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(url) as client:

        async def call(i: int) -> bool:
            body = {"code": code, "context": f"flood{i}"}
            async with client.post("/v1/cell/exec", json=body, headers=headers) as r:
                return r.status == 200 and bool((await r.json())["truncated"])

        return await asyncio.gather(*(call(i) for i in range(parallel)))


def json_memory(url: str, key: str, pid: int, parallel: int = 5) -> tuple[float, float, float]:
    """``parallel`` execs flooding 64 MiB of stdout each, answered as JSON (so cut at the JSON
    output limit); return the server's RSS before, at its peak and after, in MiB."""
    with PeakRss(pid) as rss:
        answers = asyncio.run(_json_floods(url, key, parallel))
    assert all(answers), answers
    return rss.before, rss.peak, rss.after


# Run in its own process (its client work must not share our GIL): one user sending RATE execs
# a second for SECONDS, open loop, then the count of each answer's status as JSON.
FLOOD = """
import asyncio, collections, json, sys, time
import aiohttp
url, key, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
async def main():
    statuses = collections.Counter()
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {key}"}) as s:
        async def one():
            try:
                async with s.post("/v1/cell/exec", json={"code": "pass"}) as r:
                    await r.read()
                    statuses[r.status] += 1
            except aiohttp.ClientError as e:
                statuses[type(e).__name__] += 1
        tasks, start = [], time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    print(json.dumps(statuses))
asyncio.run(main())
"""


def remove_users(client: httpx.Client, admin: dict[str, str]) -> None:
    """Every user and cell goes, workspaces too (their loop mounts with them)."""
    for user in client.get("/v1/users", headers=admin).json():
        client.delete(f"/v1/users/{user['id']}", params={"delete_workspace": "true"}, headers=admin)


def timed(call: Callable[[], object], n: int, pace: Pace | None = None) -> list[float]:
    samples = []
    for _ in range(n):
        if pace is not None:
            pace.wait()  # off the clock
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


VICTIM_RATE = 40.0  # execs a second: under the default limit (50/s), so none is refused


class Pace:
    """At most ``rate`` calls a second: ``wait()`` sleeps until the next one may go."""

    def __init__(self, rate: float) -> None:
        self.every = 1 / rate
        self.next = time.monotonic()

    def wait(self) -> None:
        time.sleep(max(0.0, self.next - time.monotonic()))
        self.next = max(self.next, time.monotonic()) + self.every


def neighbour(quick: bool) -> tuple[Samples, Samples, Samples, Samples, str]:
    """A victim's warm exec and /healthz, quiet and while a neighbour floods 1,000 execs a second,
    on a server with its default rate limits: (quiet exec, exec, quiet healthz, healthz, note)."""
    n, rate, seconds = (100, 1000, 3) if quick else (300, 1000, 10)
    with tempfile.TemporaryDirectory(prefix="agentcell-bench-neighbour-") as tmp:
        data, port = Path(tmp), free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(data, port, limited=True)
        try:
            admin = {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}
            with httpx.Client(base_url=url, timeout=120) as client:
                victim, flooder = (
                    client.post("/v1/users", json={"name": name}, headers=admin).json()["api_key"]
                    for name in ("victim", "flooder")
                )
                mine = {"Authorization": f"Bearer {victim}"}
                client.post("/v1/cell/exec", json={"code": "pass"}, headers=mine)
                client.post(
                    "/v1/cell/exec",
                    json={"code": "pass"},
                    headers={"Authorization": f"Bearer {flooder}"},
                )

                pace = Pace(VICTIM_RATE)  # the victim keeps within its own rate limit

                def run() -> None:
                    r = client.post("/v1/cell/exec", json={"code": "print(1)"}, headers=mine)
                    assert r.json()["stdout"] == "1\n", r.text

                def health() -> None:
                    client.get("/healthz").raise_for_status()

                quiet_exec, quiet_health = timed(run, n, pace), timed(health, n)
                flood = subprocess.Popen(
                    [sys.executable, "-c", FLOOD, url, flooder, str(rate), str(seconds)],
                    stdout=subprocess.PIPE,
                )
                time.sleep(0.5)  # the flood is on
                loud_exec: Samples = []
                loud_health: Samples = []
                while flood.poll() is None and len(loud_exec) < n:
                    loud_exec += timed(run, 1, pace)
                    loud_health += timed(health, 1)
                statuses = json.loads(flood.communicate()[0])
                remove_users(client, admin)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    note = f"neighbour's {rate:g}/s for {seconds:g} s answered " + ", ".join(
        f"{k}: {v}" for k, v in sorted(statuses.items())
    )
    return quiet_exec, loud_exec, quiet_health, loud_health, note


def main(quick: bool) -> None:
    n = 100 if quick else 1000
    users = 10 if quick else 50
    with tempfile.TemporaryDirectory(prefix="agentcell-bench-api-") as tmp:
        data = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(data, port)
        try:
            admin = {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}
            with httpx.Client(base_url=url, timeout=120) as client:
                keys = [
                    client.post("/v1/users", json={"name": f"u{i}"}, headers=admin).json()[
                        "api_key"
                    ]
                    for i in range(users + 1)
                ]
                console.print("warm exec through HTTP…")
                http = warm_exec(client, keys[0], n)
                before = exec_buckets(client)
                stdlib = warm_exec_stdlib(port, keys[0], n)
                stdlib_server = server_quantiles(before, exec_buckets(client))
                cells = client.get("/v1/admin/cells", headers=admin).json()
                console.print("docker exec baseline…")
                base = docker_exec_baseline(cells[0]["container_id"], 20 if quick else 50)
                console.print("10 MB stream…")
                stream_ms, rss_before, rss_peak = stream_memory(client, keys[0], proc.pid)
                console.print("5 parallel JSON floods…")
                t0 = time.perf_counter()
                floods = json_memory(url, keys[0], proc.pid)
                floods_ms = (time.perf_counter() - t0) * 1000
            console.print(f"{users} users × 20 execs…")
            with httpx.Client(base_url=url, timeout=120) as client:
                asyncio.run(crowd(url, keys[1:], 1))  # cells made before the clock starts
                before = exec_buckets(client)
                crowd_ms, errors = asyncio.run(crowd(url, keys[1:], 20))
                after = exec_buckets(client)
                server_side = server_quantiles(before, after)
            with httpx.Client(base_url=url, timeout=120) as client:
                remove_users(client, admin)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    console.print("a neighbour floods 1,000 execs/s (default rate limits)…")
    quiet_exec, loud_exec, quiet_health, loud_health, flood_note = neighbour(quick)

    table = Table(title="agentcell HTTP API benchmark (ms)")
    for col in ("what", "p50", "p95", "p99", "n", "vs docker exec (p50)", "target", "note"):
        table.add_column(col)
    b50 = pct(base, 0.5)
    for name, samples, target, note in (
        ("baseline: docker exec … print(1)", base, "", ""),
        ("warm exec through HTTP (httpx)", http, "p50 ≤ 1, p99 ≤ 5", "best peer here 18.5"),
        ("warm exec through HTTP (http.client)", stdlib, "p50 ≤ 1, p99 ≤ 5", stdlib_server),
        (
            f"{users} users × 20 execs at once, HTTP",
            crowd_ms,
            "0 errors, p99 ≤ 100",
            f"{len(errors)} errors; {server_side}",
        ),
        (
            "10 MB stdout over SSE",
            [stream_ms],
            "memory flat",
            f"server RSS {rss_before:.0f} → peak {rss_peak:.0f} MiB",
        ),
        (
            "5 parallel 64 MiB stdout floods as JSON",
            [floods_ms],
            "memory bounded",
            f"server RSS {floods[0]:.0f} → peak {floods[1]:.0f} → after {floods[2]:.0f} MiB",
        ),
        ("neighbour row: warm exec, quiet", quiet_exec, "", "default rate limits on"),
        ("neighbour row: warm exec, neighbour flooding", loud_exec, "p99 ≤ 2× quiet", flood_note),
        ("neighbour row: /healthz, quiet", quiet_health, "", ""),
        ("neighbour row: /healthz, neighbour flooding", loud_health, "p99 ≤ 2× quiet", ""),
    ):
        table.add_row(
            name,
            f"{pct(samples, 0.5):.2f}",
            f"{pct(samples, 0.95):.2f}",
            f"{pct(samples, 0.99):.2f}",
            str(len(samples)),
            f"{b50 / pct(samples, 0.5):.1f}×" if samples is not base else "1.0×",
            target,
            note,
        )
    console.print(table)
    if errors:
        console.print("first errors:", errors[:5])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
