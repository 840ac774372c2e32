"""A tunnel to a host with secrets, carried with TLS ended here: the client gets a certificate
for the host from this deployment's CA (which cells trust), the host is reached over TLS that
checks its real certificate, and in between each request gets the owner's secrets put into its
headers and target where they may go (``http.put_secrets``); a placeholder bound for a host it
may not reach is refused before anything goes out."""

from __future__ import annotations

import asyncio
import ssl

import h11

from agentcell.egress.ca import CertAuthority
from agentcell.egress.context import Meter, SecretRule
from agentcell.egress.http import (
    Exchange,
    Refusal,
    forwarded_headers,
    put_secrets,
    read_request,
    refusal_bytes,
)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
HANDSHAKE_S = 15.0


class Interceptor:
    def __init__(self, ca: CertAuthority, upstream_context: ssl.SSLContext) -> None:
        self.ca = ca
        self.upstream_context = upstream_context

    async def serve(
        self,
        client: Streams,
        upstream: Streams,
        host: str,
        port: int,
        secrets: tuple[SecretRule, ...],
        meter: Meter,
    ) -> tuple[int, int]:
        """Over ``upstream``, a connection to the host's checked address, TLS is started."""
        reader, writer = client
        await writer.start_tls(self.ca.server_context(host), ssl_handshake_timeout=HANDSHAKE_S)
        conn = h11.Connection(h11.SERVER)
        try:
            await upstream[1].start_tls(
                self.upstream_context, server_hostname=host, ssl_handshake_timeout=HANDSHAKE_S
            )
        except (OSError, TimeoutError) as exc:
            refusal = Refusal(502, f"TLS to {host}:{port} failed: {exc}", "failed")
            writer.write(refusal_bytes(conn, refusal.status, refusal.reason))
            raise refusal from None
        authority = (host if port == 443 else f"{host}:{port}").encode()
        up = down = 0
        try:
            to_host = h11.Connection(h11.CLIENT)
            while (request := await read_request(conn, reader)) is not None:
                try:
                    headers, target, _ = put_secrets(
                        forwarded_headers(request.headers, authority), request.target, host, secrets
                    )
                except Refusal as refusal:
                    writer.write(refusal_bytes(conn, refusal.status, refusal.reason))
                    raise
                exchange = Exchange(conn, client, to_host, upstream, meter, close=False)
                try:
                    await exchange.run(request, target, headers)
                finally:
                    up, down = up + exchange.bytes_up, down + exchange.bytes_down
                if h11.MUST_CLOSE in (conn.our_state, to_host.their_state, to_host.our_state):
                    break
                conn.start_next_cycle()
                to_host.start_next_cycle()
        finally:
            upstream[1].close()
        return up, down
