"""Port relay and terminal benchmarks (DESIGN §8, §11), against a real `agentcell serve`
process started here, each beside its baseline measured in the same run.

Rows: a small GET through the relay (`/v1/cell/ports/8080/hello`, keep-alive) against the
same GET made inside the cell (loopback, keep-alive), and an authenticated API request that
does not touch the cell (`GET /v1/me`: the server's own cost per request); a 100 MB GET,
through the relay and inside the cell (MB/s); a keystroke's echo in a terminal, through
the server's WebSocket and straight through the cell's control socket (what the server adds).

Usage: scripts/bench relay [--quick].
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import httpx
from rich.console import Console
from rich.table import Table
from websockets.sync.client import connect

from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import CONTROL_DIR
from bench.api import free_port, pct, remove_users, start_server

console = Console(width=160)
PORT = 8080
BIG = 100 * 1024 * 1024
SERVER = (Path(__file__).parent.parent / "tests" / "api" / "cellserver.py").read_bytes()
INSIDE = """
import http.client, json, time
conn = http.client.HTTPConnection("127.0.0.1", {port})
samples = []
for i in range({n} + 1):
    t = time.perf_counter()
    conn.request("GET", "/hello")
    assert conn.getresponse().read() == b"hello"
    samples.append((time.perf_counter() - t) * 1000)
t = time.perf_counter()
conn.request("GET", "/bytes/{big}")
response, left = conn.getresponse(), {big}
while chunk := response.read(1 << 20):
    left -= len(chunk)
assert left == 0
print(json.dumps({{"samples": samples[1:], "seconds": time.perf_counter() - t}}))
"""


def start_web_server(http: httpx.Client) -> None:
    http.put("/v1/files/raw", params={"path": "cellserver.py"}, content=SERVER).raise_for_status()
    code = f"python3 cellserver.py {PORT} > server.log 2>&1 &"
    started = http.post(
        "/v1/cell/exec", json={"language": "shell", "code": code, "background": True}
    )
    started.raise_for_status()
    while PORT not in [p["port"] for p in http.get("/v1/cell/ports").json()]:
        time.sleep(0.05)


def relay_gets(http: httpx.Client, n: int) -> list[float]:
    path = f"/v1/cell/ports/{PORT}/hello"
    assert http.get(path).text == "hello"  # warm: the connection, the cell
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        assert http.get(path).text == "hello"
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def api_gets(http: httpx.Client, n: int) -> list[float]:
    http.get("/v1/me").raise_for_status()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        http.get("/v1/me").raise_for_status()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def relay_download(http: httpx.Client) -> float:
    """MB/s of a BIG-byte body through the relay."""
    t, got = time.perf_counter(), 0
    with http.stream("GET", f"/v1/cell/ports/{PORT}/bytes/{BIG}") as response:
        for chunk in response.iter_bytes(1 << 20):
            got += len(chunk)
    assert got == BIG
    return BIG / (time.perf_counter() - t) / 1e6


def websocket_echo(url: str, key: str, n: int) -> list[float]:
    """A keystroke's round trip: type one character, wait until the shell echoes it."""
    ws_url = url.replace("http://", "ws://") + "/v1/cell/terminal"
    headers = {"Authorization": f"Bearer {key}"}
    with connect(ws_url, additional_headers=headers, ping_interval=None) as ws:
        json.loads(ws.recv(timeout=30))  # ready
        wait_for_prompt(lambda: ws.recv(timeout=30))
        samples = []
        for i in range(n + 1):
            key_byte = b"abcdefghij"[i % 10 : i % 10 + 1]
            t = time.perf_counter()
            ws.send(key_byte)
            while key_byte not in read_bytes(ws.recv(timeout=30)):
                pass
            samples.append((time.perf_counter() - t) * 1000)
            if i % 50 == 49:
                ws.send(b"\x15")  # Ctrl-U: an empty line again
        return samples[1:]


def read_bytes(message: str | bytes) -> bytes:
    return message if isinstance(message, bytes) else b""


def wait_for_prompt(recv: Callable[[], str | bytes]) -> None:
    seen = b""
    while b"$ " not in seen:
        seen += read_bytes(recv())


async def control_socket_echo(control_dir: Path, n: int) -> list[float]:
    """The same round trip straight through the cell's control socket (no server)."""
    client = ExecutorClient(control_dir)
    info, duplex = await client.attach_terminal()
    try:
        seen = b""
        while b"$ " not in seen:
            seen += await duplex.recv()
        samples = []
        for i in range(n + 1):
            key_byte = b"abcdefghij"[i % 10 : i % 10 + 1]
            t = time.perf_counter()
            await duplex.send(key_byte)
            while key_byte not in await duplex.recv():
                pass
            samples.append((time.perf_counter() - t) * 1000)
            if i % 50 == 49:
                await duplex.send(b"\x15")
        return samples[1:]
    finally:
        await duplex.close()
        await client.close_terminal(info.terminal)


def control_dir_of(container_id: str) -> Path:
    """Where the host sees the cell's control socket."""
    engine = docker.from_env()
    try:
        mounts = engine.containers.get(container_id).attrs["Mounts"]
    finally:
        engine.close()
    return Path(next(m["Source"] for m in mounts if m["Destination"] == CONTROL_DIR))


def row(table: Table, name: str, samples: list[float], baseline: list[float] | None) -> None:
    p50, p99 = pct(samples, 0.5), pct(samples, 0.99)
    extra = "" if baseline is None else f"+{p50 - pct(baseline, 0.5):.2f} ms"
    table.add_row(name, f"{p50:.2f}", f"{pct(samples, 0.95):.2f}", f"{p99:.2f}", extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    n = 100 if args.quick else 1000
    with tempfile.TemporaryDirectory(prefix="agentcell-bench-relay-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(Path(tmp), port)
        admin = {"Authorization": f"Bearer {(Path(tmp) / 'admin_token').read_text().strip()}"}
        try:
            made = httpx.post(f"{url}/v1/users", json={"name": "bench"}, headers=admin)
            key = made.json()["api_key"]
            user = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=user, timeout=300) as http:
                start_web_server(http)
                console.print("inside the cell…")
                inside = json.loads(
                    http.post(
                        "/v1/cell/exec",
                        json={"code": INSIDE.format(port=PORT, n=n, big=BIG), "timeout_s": 300},
                    ).json()["stdout"]
                )
                console.print("through the relay…")
                through, api = relay_gets(http, n), api_gets(http, n)
                relay_mbs = relay_download(http)
                console.print("keystrokes…")
                typed = websocket_echo(url, key, n)
                cell = http.get("/v1/admin/cells", headers=admin).json()[0]["container_id"]
                direct = asyncio.run(control_socket_echo(control_dir_of(cell), n))
        finally:
            with httpx.Client(base_url=url, timeout=120) as http:
                remove_users(http, admin)
            server.terminate()
            server.wait(timeout=60)
    inside_mbs = BIG / inside["seconds"] / 1e6
    table = Table(title=f"port relay and terminal ({n} samples each, ms)")
    for column in ("", "p50", "p95", "p99", "over baseline p50"):
        table.add_column(column)
    row(table, "GET /hello inside the cell (baseline)", inside["samples"], None)
    row(table, "GET /hello through the relay", through, inside["samples"])
    row(table, "GET /v1/me (the server's own cost)", api, None)
    row(table, "keystroke echo, control socket (baseline)", direct, None)
    row(table, "keystroke echo, WebSocket /v1/cell/terminal", typed, direct)
    console.print(table)
    ratio = relay_mbs / inside_mbs
    console.print(
        f"100 MB GET: inside the cell {inside_mbs:.0f} MB/s, through the relay "
        f"{relay_mbs:.0f} MB/s ({ratio:.0%} of inside; target ≥ 200 MB/s)"
    )
    overhead = pct(through, 0.5) - pct(inside["samples"], 0.5)
    console.print(f"relay GET overhead p50 {overhead:.2f} ms (target ≤ 2 ms)")


if __name__ == "__main__":
    main()
