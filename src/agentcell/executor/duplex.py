"""A byte stream both ways over a socket: what an egress connection is on each side.

Standard library only: the cell splices a local TCP client to the host's Unix connection with
``splice``; the host hands the proxy a ``SocketDuplex``. Both hold at most one read of
RELAY_BYTES per direction, and read again only once the other side took it (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Protocol

RELAY_BYTES = 256 * 1024


class Duplex(Protocol):
    """Bytes both ways. ``recv`` gives b"" once the other side is done sending; ``send_eof``
    says we are (the other way stays open); ``close`` ends both ways, once no ``recv`` or
    ``send`` is in flight (cancel them first). ``recv`` and ``send`` raise ``ConnectionError``
    when the other side went away abruptly."""

    @property
    def id(self) -> str: ...

    async def recv(self, max_bytes: int = RELAY_BYTES) -> bytes: ...
    async def send(self, data: bytes) -> None: ...
    async def send_eof(self) -> None: ...
    async def close(self) -> None: ...


class SocketDuplex:
    """A ``Duplex`` over a connected non-blocking stream socket; ``pending``: bytes already
    read from it (after a request's answer line) that ``recv`` gives first."""

    def __init__(self, sock: socket.socket, id: str = "", pending: bytes = b"") -> None:
        self.sock = sock
        self._id = id
        self.pending = pending
        self.loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"SocketDuplex({self._id!r})"

    @property
    def id(self) -> str:
        return self._id

    async def recv(self, max_bytes: int = RELAY_BYTES) -> bytes:
        if self.pending:
            data, self.pending = self.pending[:max_bytes], self.pending[max_bytes:]
            return data
        try:
            return await self.loop.sock_recv(self.sock, max_bytes)
        except OSError as exc:
            raise as_connection_error(exc) from exc

    async def send(self, data: bytes) -> None:
        try:
            await self.loop.sock_sendall(self.sock, data)
        except OSError as exc:
            raise as_connection_error(exc) from exc

    async def send_eof(self) -> None:
        with contextlib.suppress(OSError):  # gone already: the next recv or send says so
            self.sock.shutdown(socket.SHUT_WR)

    async def close(self) -> None:
        self.sock.close()


def as_connection_error(exc: OSError) -> ConnectionError:
    if isinstance(exc, ConnectionError):
        return exc
    return ConnectionResetError(exc.errno, exc.strerror or str(exc))


async def pump(src: socket.socket, dst: socket.socket) -> bool:
    """Copy src to dst until src's EOF, then shut dst's writing side; False on a reset."""
    loop = asyncio.get_running_loop()
    try:
        while data := await loop.sock_recv(src, RELAY_BYTES):
            await loop.sock_sendall(dst, data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        return False
    return True


async def splice(a: socket.socket, b: socket.socket, first: bytes = b"") -> None:
    """Relay a and b both ways (``first``: bytes to give b before what a sends) until both
    are done, or either is reset (then both ways stop). The caller closes the sockets."""
    if first:
        try:
            await asyncio.get_running_loop().sock_sendall(b, first)
        except OSError:
            return
    ways = [asyncio.ensure_future(pump(a, b)), asyncio.ensure_future(pump(b, a))]
    try:
        for way in asyncio.as_completed(ways):
            if not await way:
                return
    finally:
        for way in ways:
            way.cancel()
        await asyncio.gather(*ways, return_exceptions=True)
