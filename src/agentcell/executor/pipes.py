"""The code's output: stdout/stderr pipes read raw, cut at the exec's output limit, batched into
Output events for the client, with backpressure. Standard library only."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
from collections.abc import Callable

from . import protocol as p
from .conn import Conn

READ_BYTES = 64 * 1024  # at most this much output per Output event
HIGH_WATER = 1024 * 1024  # pause the output pipes while this much waits for the client
DRAIN_READS = 32  # reads per pipe at the end: a background writer must not hold us forever
COALESCE_S = 0.002
STREAMS: tuple[p.Stream, ...] = ("stdout", "stderr")


class Pump:
    """Reads raw, non-blocking pipe fds (no hidden buffers) and hands the bytes to a sink."""

    def __init__(self, fds: dict[p.Stream, int]) -> None:
        self.loop = asyncio.get_running_loop()
        self.fds = fds
        self.sink: Sink | None = None  # None: output is read and dropped
        for fd in fds.values():
            os.set_blocking(fd, False)
        self.resume()

    def resume(self) -> None:
        for stream, fd in self.fds.items():
            self.loop.add_reader(fd, self.read, stream, fd)

    def pause(self) -> None:
        for fd in self.fds.values():
            self.loop.remove_reader(fd)

    def read(self, stream: p.Stream, fd: int) -> bool:
        """Read once; False when there is nothing more to read now."""
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(fd)
            os.close(fd)
            del self.fds[stream]
            return False
        if self.sink is not None:
            self.sink.feed(stream, data)
        return True

    def drain(self) -> None:
        """Read what the pipes hold now, without waiting for more."""
        for stream, fd in list(self.fds.items()):
            for _ in range(DRAIN_READS):
                if not self.read(stream, fd):
                    break

    def close(self) -> None:
        self.pause()
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class Sink:
    """Turns one exec's output into Output events, within its output limit. Events wait up
    to COALESCE_S to go out together: most short execs then answer in one write, Exit included."""

    def __init__(self, conn: Conn, limit: int, pump: Pump) -> None:
        self.conn = conn
        self.room = limit
        self.pump = pump
        self.truncated = False
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in STREAMS}
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.final = False  # at the end, everything goes out with the Exit
        self.draining: asyncio.Task[None] | None = None
        self.stderr_ends_line = True

    def feed(self, stream: p.Stream, data: bytes) -> None:
        if stream == "stderr" and data:
            self.stderr_ends_line = data.endswith(b"\n")
        if len(data) > self.room:
            data = data[: self.room]
            self.truncated = True
        self.room -= len(data)
        if data:
            self.emit(stream, self.decoders[stream].decode(data))

    def emit(self, stream: p.Stream, text: str) -> None:
        if not text:
            return
        self.pending.append(p.Output(stream, text).encode())
        self.pending_bytes += len(self.pending[-1])
        if self.final:
            return
        if self.pending_bytes >= READ_BYTES:
            self.flush()
        elif self.timer is None:
            self.timer = self.pump.loop.call_later(COALESCE_S, self.flush)

    def flush(self, tail: bytes = b"") -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.conn.write(b"".join([*self.pending, tail]))
        self.pending.clear()
        self.pending_bytes = 0
        if self.draining is None and len(self.conn.out) > HIGH_WATER:
            self.pump.pause()  # backpressure: the code blocks on a full pipe
            self.draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.conn.drain()
        self.draining = None
        if self.pump.sink is self:
            self.pump.resume()

    def finish(self, drain: Callable[[], None]) -> None:
        """Take the output left in the pipes, to go out in one write with the Exit."""
        self.final = True
        drain()
        for stream, decoder in self.decoders.items():
            # Bytes held back by a cut are dropped, not turned into replacement characters.
            self.emit(stream, "" if self.truncated else decoder.decode(b"", final=True))

    def note(self, line: str) -> None:
        """A line of ours at the end of stderr, on a line of its own, beyond the output limit."""
        self.emit("stderr", ("" if self.stderr_ends_line else "\n") + line + "\n")

    def exit(self, msg: p.Exit) -> None:
        self.flush(msg.encode())
