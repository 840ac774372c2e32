"""A cell's connection (a ``Duplex``) as the asyncio streams the proxy reads and writes."""

from __future__ import annotations

import asyncio

from agentcell.executor.duplex import Duplex, SocketDuplex

STREAM_LIMIT = 64 * 1024  # the longest line a StreamReader holds (h11 reads by chunks anyway)


async def open_streams(conn: Duplex) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams made on the connection's own socket; what the executor's reply already carried
    is read first. (Every cell service gives sockets today; a Duplex over a network would be
    bridged here through a socket pair.)"""
    if not isinstance(conn, SocketDuplex):
        raise TypeError(f"the egress proxy reads sockets, not {type(conn).__name__}")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    if conn.pending:
        reader.feed_data(conn.pending)
    # With a callback, as asyncio.start_server makes them: the writer's start_tls then takes
    # the server's side (what the interceptor needs).
    made: asyncio.Future[asyncio.StreamWriter] = loop.create_future()
    protocol = asyncio.StreamReaderProtocol(reader, lambda _r, w: made.set_result(w), loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, conn.sock)
    return reader, await made
