"""A CONNECT tunnel: bytes both ways, paced by the owner's budget and counted; the client's
first bytes, when they are a TLS ClientHello, must name the host the tunnel was asked for."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from agentcell.egress.context import Meter

CHUNK = 256 * 1024
HELLO_MAX = 16 * 1024 + 5  # one TLS record
HELLO_WAIT_S = 10.0


class SniMismatch(Exception):
    pass


def server_name(hello: bytes) -> str | None:
    """The SNI host name of a TLS ClientHello record (None: none, or not a ClientHello)."""
    try:
        if hello[0] != 0x16 or hello[5] != 0x01:
            return None
        at = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        at += 1 + hello[at]  # session id
        at += 2 + struct.unpack_from("!H", hello, at)[0]  # cipher suites
        at += 1 + hello[at]  # compression methods
        end = at + 2 + struct.unpack_from("!H", hello, at)[0]
        at += 2
        while at + 4 <= min(end, len(hello)):
            kind, size = struct.unpack_from("!HH", hello, at)
            at += 4
            if kind == 0:  # server_name: list length, then (type 0, length, name)
                if hello[at + 2] != 0:
                    return None
                (length,) = struct.unpack_from("!H", hello, at + 3)
                name = hello[at + 5 : at + 5 + length]
                if len(name) != length:
                    return None
                return name.decode("ascii").lower().rstrip(".")
            at += size
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


async def first_bytes(reader: asyncio.StreamReader, pending: bytes) -> bytes:
    """The client's first bytes: a whole TLS record when they start one (as far as it comes
    within HELLO_WAIT_S), else what one read gives."""
    data = pending or await reader.read(CHUNK)
    if not data or data[0] != 0x16:
        return data
    async with asyncio.timeout(HELLO_WAIT_S):
        while len(data) < 5 or len(data) < min(HELLO_MAX, 5 + struct.unpack_from("!H", data, 3)[0]):
            more = await reader.read(CHUNK)
            if not more:
                break
            data += more
    return data


async def pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    meter: Meter,
    counted: list[int],
    first: bytes = b"",
) -> None:
    """Copy reader to writer until EOF (then half-close writer), pacing by meter."""
    data = first or await reader.read(CHUNK)
    while data:
        writer.write(data)
        await writer.drain()
        counted[0] += len(data)
        if wait := meter.take(len(data)):
            await asyncio.sleep(wait)
        data = await reader.read(CHUNK)
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    meter: Meter,
    *,
    host: str,
    pending: bytes,
    check_sni: bool,
) -> tuple[int, int]:
    """Relay both ways until both are done (or one fails); bytes (up, down). SniMismatch when
    the client's ClientHello names another host than ``host`` (nothing was sent upstream)."""
    first = pending
    if check_sni:
        first = await first_bytes(client[0], pending)
        sni = server_name(first)
        if sni is not None and sni != host:
            raise SniMismatch(f"the TLS server name {sni} does not match the CONNECT host {host}")
    up, down = [0], [0]
    ways = [
        asyncio.ensure_future(pump(client[0], upstream[1], meter, up, first)),
        asyncio.ensure_future(pump(upstream[0], client[1], meter, down)),
    ]
    try:
        for way in asyncio.as_completed(ways):
            try:
                await way
            except (ConnectionError, OSError):
                break  # a reset either way ends both
    finally:
        for way in ways:
            way.cancel()
        await asyncio.gather(*ways, return_exceptions=True)
    return up[0], down[0]
