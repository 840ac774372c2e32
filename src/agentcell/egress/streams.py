"""A cell's connection (a ``Duplex``) as the asyncio streams the proxy reads and writes."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from agentcell.executor.duplex import RELAY_BYTES, Duplex, SocketDuplex

STREAM_LIMIT = 64 * 1024  # the longest line a StreamReader holds (h11 reads by chunks anyway)


async def open_streams(conn: Duplex) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over conn. A socket's are made on the socket itself (what the executor's reply
    already carried is read first); any other Duplex is bridged through a socket pair."""
    loop = asyncio.get_running_loop()
    if isinstance(conn, SocketDuplex):
        sock, first = conn.sock, conn.pending
    else:
        sock, theirs = socket.socketpair()
        loop.create_task(_bridge(conn, theirs))
        first = b""
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    if first:
        reader.feed_data(first)
    # With a callback, as asyncio.start_server makes them: the writer's start_tls then takes
    # the server's side (what the interceptor needs).
    made: asyncio.Future[asyncio.StreamWriter] = loop.create_future()
    protocol = asyncio.StreamReaderProtocol(reader, lambda _r, w: made.set_result(w), loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, sock)
    return reader, await made


async def _bridge(conn: Duplex, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)

    async def outward() -> None:
        while data := await loop.sock_recv(sock, RELAY_BYTES):
            await conn.send(data)
        await conn.send_eof()

    async def inward() -> None:
        while data := await conn.recv():
            await loop.sock_sendall(sock, data)
        sock.shutdown(socket.SHUT_WR)

    ways = [asyncio.ensure_future(outward()), asyncio.ensure_future(inward())]
    try:
        await asyncio.gather(*ways)
    except (OSError, ConnectionError):
        pass
    finally:
        for way in ways:
            way.cancel()
        await asyncio.gather(*ways, return_exceptions=True)
        with contextlib.suppress(OSError):
            sock.close()
        await conn.close()
