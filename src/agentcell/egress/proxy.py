"""The egress proxy (DESIGN §10): one connection from a cell, read as an HTTP proxy request,
checked against its owner's policy, the address rules and the ports, then carried: a CONNECT
tunnel spliced (or, to a host with a secret, intercepted), a plain HTTP request forwarded.
Every connection ends in an ``EgressRecord``; a refusal answers the client with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Protocol
from urllib.parse import urlsplit

import h11

from agentcell.egress.addresses import AddressRules, IPAddress, Resolver
from agentcell.egress.context import EgressContext, Meter, SecretRule
from agentcell.egress.http import (
    Exchange,
    Refusal,
    forwarded_headers,
    put_secrets,
    read_request,
    refusal_bytes,
)
from agentcell.egress.limits import EgressLimits, TooManyConnections
from agentcell.egress.policy import decide, matches
from agentcell.egress.records import EgressRecord
from agentcell.egress.tunnel import SniMismatch, splice

log = logging.getLogger(__name__)
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Interceptor(Protocol):
    """Carries a CONNECT tunnel to a host with secrets: TLS ends here, secrets go in."""

    async def serve(
        self,
        client: Streams,
        upstream: Streams,
        host: str,
        port: int,
        secrets: tuple[SecretRule, ...],
        meter: Meter,
    ) -> tuple[int, int]:
        """Bytes (up, down); Refusal when a request may not go on. ``upstream``: connected
        to the host's checked address, no byte sent yet."""
        ...


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """host and port of ``host[:port]`` / ``[v6]:port``; ValueError when it is none."""
    parts = urlsplit(f"//{authority}")
    port = parts.port or default_port  # .port raises ValueError when it is no number
    if not parts.hostname or not 0 < port < 65536:
        raise ValueError(authority)
    return parts.hostname.lower().rstrip("."), port


class EgressProxy:
    def __init__(
        self,
        resolver: Resolver,
        rules: AddressRules,
        limits: EgressLimits,
        interceptor: Interceptor | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.resolver = resolver
        self.rules = rules
        self.limits = limits
        self.interceptor = interceptor
        self.connect_timeout_s = connect_timeout_s

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: EgressContext
    ) -> EgressRecord:
        """Carry one connection from ``ctx.owner``'s cell to its end; never raises for what
        the client does. The caller closes the streams."""
        record = EgressRecord(ctx.owner)
        conn = h11.Connection(h11.SERVER)
        try:
            with self.limits.open(ctx.owner) as meter:
                await self._serve(conn, (reader, writer), ctx, record, meter)
        except TooManyConnections as exc:
            self._refuse(conn, writer, record, Refusal(429, str(exc)))
        except Refusal as refusal:
            self._refuse(conn, writer, record, refusal)
        except (OSError, TimeoutError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            if record.verdict == "allowed":
                record.reason = record.reason or f"ended: {type(exc).__name__}"
            else:
                record.verdict, record.reason = "failed", f"{type(exc).__name__}: {exc}"
        return record.end()

    def _refuse(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, record: EgressRecord, r: Refusal
    ) -> None:
        record.verdict = "refused" if r.verdict == "refused" else "failed"
        record.reason = r.reason
        log.info("egress of %s to %s:%s %s: %s", record.owner, record.host, record.port,
                 record.verdict, r.reason)  # fmt: skip
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(refusal_bytes(conn, r.status, r.reason))

    async def _serve(
        self,
        conn: h11.Connection,
        client: Streams,
        ctx: EgressContext,
        record: EgressRecord,
        meter: Meter,
    ) -> None:
        request = await read_request(conn, client[0])
        if request is None:
            record.reason = "closed before a request"
            return
        if request.method == b"CONNECT":
            await self._tunnel(conn, client, request, ctx, record, meter)
        else:
            await self._forward(conn, client, request, ctx, record, meter)

    async def _connect(self, host: str, port: int, ctx: EgressContext) -> tuple[Streams, IPAddress]:
        """Streams to host:port if the owner may reach it; else Refusal, saying why."""
        if port not in ctx.ports:
            raise Refusal(403, f"port {port} is not allowed (only {_ports(ctx.ports)})")
        verdict = decide(ctx.policy, host)
        if not verdict.allowed:
            raise Refusal(403, verdict.reason)
        try:
            addresses = await self.resolver.resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refusal(502, f"cannot resolve {host}: {exc}", "failed") from None
        allowed = [a for a in addresses if self.rules.refused(a) is None]
        if not allowed:
            why = self.rules.refused(addresses[0]) if addresses else "no address"
            raise Refusal(403, f"{host} resolves to an address cells may never reach: {why}")
        failure = ""
        for address in allowed:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    return await asyncio.open_connection(str(address), port), address
            except TimeoutError:
                failure = f"no answer from {host}:{port} within {self.connect_timeout_s:g}s"
            except OSError as exc:
                failure = f"cannot connect to {host}:{port} ({exc.strerror or exc})"
        status = 504 if failure.startswith("no answer") else 502
        raise Refusal(status, failure, "failed")

    async def _tunnel(
        self,
        conn: h11.Connection,
        client: Streams,
        request: h11.Request,
        ctx: EgressContext,
        record: EgressRecord,
        meter: Meter,
    ) -> None:
        try:
            host, port = split_authority(request.target.decode("ascii"), 443)
        except ValueError:
            raise Refusal(400, "CONNECT wants host:port") from None
        record.host, record.port = host, port
        upstream, address = await self._connect(host, port, ctx)
        try:
            established = h11.Response(
                status_code=200, headers=[], reason=b"Connection established"
            )
            client[1].write(conn.send(established) or b"")
            await client[1].drain()
            record.verdict, record.reason = "allowed", ""
            pending = conn.trailing_data[0]
            secrets = tuple(s for s in ctx.secrets if any(matches(p, host) for p in s.hosts))
            if secrets and self.interceptor is not None and not pending:
                record.intercepted = True
                up, down = await self.interceptor.serve(
                    client, upstream, host, port, secrets, meter
                )
            else:
                try:
                    up, down = await splice(
                        client, upstream, meter, host=host, pending=pending, check_sni=port == 443
                    )
                except SniMismatch as exc:
                    record.verdict, record.reason = "refused", str(exc)
                    return
            record.bytes_up, record.bytes_down = up, down
        except Refusal as refusal:  # inside the tunnel: the interceptor refused one request
            record.verdict, record.reason = "refused", refusal.reason
        finally:
            upstream[1].close()

    async def _forward(
        self,
        conn: h11.Connection,
        client: Streams,
        request: h11.Request,
        ctx: EgressContext,
        record: EgressRecord,
        meter: Meter,
    ) -> None:
        url = urlsplit(request.target.decode("ascii", "replace"))
        if url.scheme != "http" or not url.netloc:
            raise Refusal(400, "send absolute http:// URLs (this is a proxy), or CONNECT")
        try:
            host, port = split_authority(url.netloc, 80)
        except ValueError:
            raise Refusal(400, f"{url.netloc!r} is not host[:port]") from None
        record.host, record.port = host, port
        target = (url.path or "/").encode() + (f"?{url.query}".encode() if url.query else b"")
        authority = url.netloc.encode()
        headers, target, record.intercepted = put_secrets(
            forwarded_headers(request.headers, authority), target, host, ctx.secrets
        )
        upstream, _ = await self._connect(host, port, ctx)
        try:
            record.verdict = "allowed"
            exchange = Exchange(
                conn, client, h11.Connection(h11.CLIENT), upstream, meter, close=True
            )
            try:
                await exchange.run(request, target, headers)
            finally:
                record.bytes_up, record.bytes_down = exchange.bytes_up, exchange.bytes_down
        finally:
            upstream[1].close()


def _ports(ports: frozenset[int]) -> str:
    return ", ".join(map(str, sorted(ports)))
