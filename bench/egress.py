"""Egress benchmarks (DESIGN §8): the same requests from this host straight to a web server and
through the egress proxy, in one run, against a hermetic internet (a network namespace of its
own, tests/egress/internet.py; root and `ip` needed).

Rows (connect + first byte of the answer, p50/p99): plain HTTP (the proxy forwards it),
HTTPS as a CONNECT tunnel (TLS end to end), HTTPS to a host with a secret (TLS ended at the
proxy, the secret put in, TLS again to the host); and a 100 MB HTTPS download's throughput,
direct and through a tunnel. The proxy runs on loopback in a process of its own, as in the
server (without the cell's forwarder and control socket in front).

Usage: scripts/bench egress [--quick].
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentcell.egress.addresses import AddressRules, Resolver
from agentcell.egress.ca import CertAuthority
from agentcell.egress.context import EgressContext, SecretRule
from agentcell.egress.intercept import Interceptor
from agentcell.egress.limits import EgressLimits
from agentcell.egress.proxy import EgressProxy
from agentcell.schemas import NetworkPolicy
from bench.api import pct
from tests.egress.internet import NETWORK, ORIGIN, Internet, internet

console = Console(width=160)
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
BIG = 100 * 1024 * 1024


async def first_byte(streams: Streams, request: bytes) -> None:
    reader, writer = streams
    writer.write(request)
    await writer.drain()
    assert await reader.read(1)
    writer.close()
    with contextlib.suppress(OSError):  # TLS goodbyes the other side cut short
        await writer.wait_closed()


async def via_connect(proxy_port: int, host: str) -> Streams:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def timed(n: int, once: Callable[[], Awaitable[None]]) -> list[float]:
    await once()  # warm: caches, the CA's leaf
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await once()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


async def download(streams: Streams, host: str) -> float:
    """MB/s of a BIG-byte body."""
    reader, writer = streams
    t = time.perf_counter()
    writer.write(f"GET /bytes/{BIG} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    left = BIG
    while left > 0:
        left -= len(await reader.read(1 << 20))
    writer.close()
    return BIG / (time.perf_counter() - t) / 1e6


def serve_proxy(net: Internet, where: Path, ports: multiprocessing.Queue[int]) -> None:
    """The proxy, in a process of its own as in the server (the client here has the other
    core), on loopback; its port is put on ``ports``."""
    ca = CertAuthority.load_or_create(where / "egress")
    upstream = ssl.create_default_context(cafile=str(net.ca_pem))
    proxy = EgressProxy(
        Resolver(net.hosts()),
        AddressRules(test_networks=[NETWORK]),
        EgressLimits(64, 0),
        Interceptor(ca, upstream),
    )
    secret = SecretRule("TOKEN", "PLACEHOLDER", "value", ("api.test",))
    ctx = EgressContext("bench", NetworkPolicy(mode="public"), secrets=(secret,))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await proxy.serve(reader, writer, ctx)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


async def run(net: Internet, where: Path, n: int) -> None:
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve_proxy, args=(net, where, ports), daemon=True)
    process.start()
    try:
        await measure(net, where, n, ports.get(timeout=30))
    finally:
        process.terminate()
        process.join()


async def measure(net: Internet, where: Path, n: int, port: int) -> None:
    ca = CertAuthority.load_or_create(where / "egress")
    upstream = ssl.create_default_context(cafile=str(net.ca_pem))
    trust_ca = ssl.create_default_context(cadata=ca.cert_pem.decode())
    get = b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n"
    secret_get = b"GET / HTTP/1.1\r\nHost: api.test\r\nAuthorization: PLACEHOLDER\r\n\r\n"

    async def http_direct() -> None:
        await first_byte(await asyncio.open_connection(ORIGIN, 80), get)

    async def http_proxied() -> None:
        absolute = b"GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n"
        await first_byte(await asyncio.open_connection("127.0.0.1", port), absolute)

    async def https_direct() -> None:
        tls = await asyncio.open_connection(ORIGIN, 443, ssl=upstream, server_hostname="web.test")
        await first_byte(tls, get)

    async def https_tunnel() -> None:
        reader, writer = await via_connect(port, "web.test")
        await writer.start_tls(upstream, server_hostname="web.test")
        await first_byte((reader, writer), get)

    async def https_secret() -> None:
        reader, writer = await via_connect(port, "api.test")
        await writer.start_tls(trust_ca, server_hostname="api.test")
        await first_byte((reader, writer), secret_get)

    rows = [
        ("HTTP GET", await timed(n, http_direct), await timed(n, http_proxied)),
        ("HTTPS GET (tunnel)", await timed(n, https_direct), await timed(n, https_tunnel)),
        ("HTTPS GET with a secret (intercepted)", None, await timed(n, https_secret)),
    ]
    table = Table(title=f"egress: connect + first byte, ms ({n} each, one run)")
    for column in ("request", "direct p50", "direct p99", "proxy p50", "proxy p99", "p50 ratio"):
        table.add_column(column, justify="right")
    https_p50 = pct(rows[1][1] or [0], 0.5)
    for name, direct, proxied in rows:
        base = direct or rows[1][1] or []
        label = name if direct else f"{name} (vs direct HTTPS)"
        table.add_row(
            label,
            f"{pct(base, 0.5):.2f}" if direct else "",
            f"{pct(base, 0.99):.2f}" if direct else "",
            f"{pct(proxied, 0.5):.2f}",
            f"{pct(proxied, 0.99):.2f}",
            f"{pct(proxied, 0.5) / (pct(base, 0.5) if direct else https_p50):.2f}x",
        )
    console.print(table)
    tls = await asyncio.open_connection(ORIGIN, 443, ssl=upstream, server_hostname="web.test")
    direct_mb = await download(tls, "web.test")
    reader, writer = await via_connect(port, "web.test")
    await writer.start_tls(upstream, server_hostname="web.test")
    tunnel_mb = await download((reader, writer), "web.test")
    throughput = Table(title="egress: 100 MB HTTPS download, MB/s")
    for column in ("direct", "through a tunnel", "ratio"):
        throughput.add_column(column, justify="right")
    throughput.add_row(f"{direct_mb:.0f}", f"{tunnel_mb:.0f}", f"{tunnel_mb / direct_mb:.2f}x")
    console.print(throughput)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for net in internet(Path(tmp)):
            asyncio.run(run(net, Path(tmp), 50 if args.quick else 300))


if __name__ == "__main__":
    main()
