"""One client connection of the executor server: request lines in, event lines out.

Standard library only. The socket is used raw (non-blocking, with loop readers and writers):
a warm exec is made of fixed costs, and asyncio's streams and transports are a good part of them.
"""

from __future__ import annotations

import asyncio
import socket

from . import protocol as p

RECV_BYTES = 64 * 1024


class Fail(Exception):
    """A request error that the client is told about as an Error event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Conn:
    """One client connection on a non-blocking socket: lines in, buffered writes out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # loops are given fds: a socket object costs a repr each time
        self.loop = asyncio.get_running_loop()
        self.inbuf = bytearray()
        self.out = bytearray()
        self.lost = False  # the client hung up
        self.closing = False
        self.flushed: asyncio.Future[None] | None = None

    async def readline(self) -> bytes:
        """The next line; b"" when the client hung up before sending one."""
        start = 0
        while (end := self.inbuf.find(b"\n", start)) < 0:
            if len(self.inbuf) > p.REQUEST_LINE_LIMIT:
                raise Fail("invalid_request", "message too long")
            start = len(self.inbuf)
            try:
                data = await self.loop.sock_recv(self.sock, RECV_BYTES)
            except OSError:
                data = b""
            if not data:
                return b""
            self.inbuf += data
        line = bytes(self.inbuf[: end + 1])
        del self.inbuf[: end + 1]
        return line

    async def read_exactly(self, size: int) -> bytes:
        """``size`` bytes (fewer if the client hung up first)."""
        while len(self.inbuf) < size:
            try:
                data = await self.loop.sock_recv(self.sock, RECV_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            self.inbuf += data
        got = bytes(self.inbuf[:size])
        del self.inbuf[:size]
        return got

    def write(self, data: bytes) -> None:
        if self.lost:
            return
        if not self.out:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._hung_up()
                return
            if sent == len(data):
                return
            data = data[sent:]
            self.loop.add_writer(self.fd, self._flush)
        self.out += data

    def _flush(self) -> None:
        try:
            del self.out[: self.sock.send(self.out)]
        except BlockingIOError:
            return
        except OSError:
            self._hung_up()
        if not self.out:
            self.loop.remove_writer(self.fd)
            if self.flushed is not None and not self.flushed.done():
                self.flushed.set_result(None)
            if self.closing:
                self.sock.close()

    def _hung_up(self) -> None:
        self.lost = True
        self.out.clear()

    async def drain(self) -> None:
        if self.out:
            self.flushed = self.loop.create_future()
            await self.flushed
        if self.lost:
            raise ConnectionResetError("the client hung up")

    def hangup(self) -> asyncio.Future[None]:
        """Done when the client hangs up; watched while code runs (the client sends nothing)."""
        fut: asyncio.Future[None] = self.loop.create_future()

        def check() -> None:
            try:
                if self.sock.recv(4096):
                    return
            except BlockingIOError:
                return
            except OSError:
                pass
            self.loop.remove_reader(self.fd)
            if not fut.done():
                fut.set_result(None)

        self.loop.add_reader(self.fd, check)
        return fut

    def close(self) -> None:
        """Close once everything written has gone out."""
        self.loop.remove_reader(self.fd)
        if self.out and not self.lost:
            self.closing = True
        else:
            self.loop.remove_writer(self.fd)
            self.sock.close()
