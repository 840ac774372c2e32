"""Idle connections to a cell's ports, kept for the next request: HTTP keep-alive through the
port relay (DESIGN §11), so that a page's many requests do not each pay for a connection
through the control socket and a new one to the server in the cell.

A connection is given back only after a clean exchange (``PortStream.keep``); one idle for
IDLE_S, or that the server in the cell closed meanwhile, is dropped when next looked at. The
pool lives with its cell and holds no cell busy: idle connections do not keep it awake.
"""

from __future__ import annotations

import socket
import time

from agentcell.executor.duplex import RELAY_BYTES, Duplex, SocketDuplex

IDLE_S = 30.0
PER_PORT = 8


class PortStream:
    """A connection to a port of the cell for one exchange; ``reused``: it served an earlier
    one. ``keep()`` once the exchange ended cleanly gives it back to the pool."""

    def __init__(self, duplex: Duplex, reused: bool) -> None:
        self.duplex, self.reused, self.kept = duplex, reused, False

    @property
    def id(self) -> str:
        return self.duplex.id

    async def recv(self, max_bytes: int = RELAY_BYTES) -> bytes:
        return await self.duplex.recv(max_bytes)

    async def send(self, data: bytes) -> None:
        await self.duplex.send(data)

    async def send_eof(self) -> None:
        await self.duplex.send_eof()

    async def close(self) -> None:
        await self.duplex.close()

    def keep(self) -> None:
        self.kept = True


class PortPool:
    def __init__(self) -> None:
        self._idle: dict[int, list[tuple[float, SocketDuplex]]] = {}

    def take(self, port: int) -> SocketDuplex | None:
        """An idle connection to the port that is still open, if there is one."""
        idle = self._idle.get(port, [])
        while idle:
            since, duplex = idle.pop()
            if time.monotonic() - since < IDLE_S and still_open(duplex):
                return duplex
            duplex.sock.close()
        return None

    def give(self, port: int, duplex: Duplex) -> bool:
        """Keep the connection for the next request; False when it is not kept (close it)."""
        idle = self._idle.setdefault(port, [])
        if not isinstance(duplex, SocketDuplex) or duplex.pending or len(idle) >= PER_PORT:
            return False
        idle.append((time.monotonic(), duplex))
        return True


def still_open(duplex: SocketDuplex) -> bool:
    """Nothing to read and no end seen: an idle HTTP connection the server has not closed."""
    try:
        duplex.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False  # its end, or bytes no request asked for
