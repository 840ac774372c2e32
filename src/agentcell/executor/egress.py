"""The cell's egress forwarder (DESIGN §10). Standard library only.

A cell has no network interface. While the host holds an ``EgressListen`` request open, this
listens on the cell's loopback (``127.0.0.1:EGRESS_PORT``, where the proxy variables point) and
offers each connection it accepts to the host on that request (``EgressOffer``); the host takes
one by a connection of its own (``EgressAccept``), which is then spliced to the local client,
raw bytes both ways. The host's side checks and carries them on (the proxy); nothing here
decides anything. When the listen request ends, the port is closed and offers not taken yet are
dropped; connections already relayed go on to their end.

Bounds: at most EGRESS_PENDING_MAX offers wait for the host, and EGRESS_RELAYS_MAX connections
are relayed at once; beyond that new connections wait in the listen backlog. An offer not taken
within EGRESS_OFFER_TTL_S is dropped (its client sees the connection closed).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as p
from .conn import Conn, Fail
from .duplex import splice
from .procs import wait_any

log = logging.getLogger(__name__)
Handler = Callable[[Any, Conn], Awaitable[None]]
BACKLOG = 128


class Offer:
    """A local client accepted and offered to the host, until the host takes it or it expires."""

    def __init__(self, sock: socket.socket, expire: asyncio.TimerHandle) -> None:
        self.sock = sock
        self.expire = expire


class Egress:
    def __init__(self, port: int = p.EGRESS_PORT) -> None:
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.holder: Conn | None = None  # the host's listen request, while it lasts
        self.free = asyncio.Event()  # set when no listen holds the port
        self.free.set()
        self.offers: dict[str, Offer] = {}
        self.relays = 0
        self.room = asyncio.Event()  # set when an offer or a relay ends

    def handlers(self) -> dict[type[p.Message], Handler]:
        return {p.EgressListen: self.listen, p.EgressAccept: self.accept}

    async def listen(self, _req: p.EgressListen, conn: Conn) -> None:
        while self.holder is not None:
            if not hung_up(self.holder.sock):
                raise Fail("conflict", "the host is listening for this cell's egress already")
            await self.free.wait()  # it hung up just now: its end comes at the next turn
        listener = self.bind()
        self.holder = conn
        self.free.clear()
        try:
            conn.write(p.Ok().encode())
            await conn.drain()
            gone = conn.hangup()
            accepting = self.loop.create_task(self.accept_loop(listener, conn))
            try:
                while not gone.done():
                    await wait_any((gone, accepting), p.BEAT_S)
                    if accepting.done():
                        accepting.result()  # it only ends by failing: raise why
                    if not gone.done():
                        conn.write(p.Beat().encode())
            finally:
                accepting.cancel()
                await asyncio.gather(accepting, return_exceptions=True)
        finally:
            listener.close()
            self.holder = None
            self.free.set()
            for offer_id in list(self.offers):
                self.drop(offer_id)

    def bind(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(BACKLOG)
        except OSError as exc:
            listener.close()
            raise Fail(
                "conflict", f"cannot listen on 127.0.0.1:{self.port} in the cell: {exc.strerror}"
            ) from exc
        listener.setblocking(False)
        return listener

    async def accept_loop(self, listener: socket.socket, conn: Conn) -> None:
        while True:
            while (
                len(self.offers) >= p.EGRESS_PENDING_MAX or self.relays >= p.EGRESS_RELAYS_MAX
            ):  # the backlog holds the next ones meanwhile
                self.room.clear()
                await self.room.wait()
            try:
                client, _ = await self.loop.sock_accept(listener)
            except OSError as exc:  # out of fds: back off rather than spin
                log.warning("egress accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            offer_id = secrets.token_hex(8)
            expire = self.loop.call_later(p.EGRESS_OFFER_TTL_S, self.drop, offer_id)
            self.offers[offer_id] = Offer(client, expire)
            conn.write(p.EgressOffer(offer_id).encode())

    def drop(self, offer_id: str) -> None:
        offer = self.offers.pop(offer_id, None)
        if offer is not None:
            offer.expire.cancel()
            offer.sock.close()
            self.room.set()

    async def accept(self, req: p.EgressAccept, conn: Conn) -> None:
        offer = self.offers.pop(req.id, None) if isinstance(req.id, str) else None
        if offer is None:
            raise Fail("not_found", f"no egress connection {req.id!r} is waiting (dropped?)")
        offer.expire.cancel()
        self.relays += 1
        try:
            conn.write(p.Ok().encode())
            await conn.drain()
            leftover, conn.inbuf = bytes(conn.inbuf), bytearray()
            await splice(conn.sock, offer.sock, leftover)
        finally:
            offer.sock.close()
            self.relays -= 1
            self.room.set()

    def shutdown(self) -> None:
        for offer_id in list(self.offers):
            self.drop(offer_id)


def egress_env(port: int = p.EGRESS_PORT) -> dict[str, str]:
    """What every program in the cell gets so that it goes through the forwarder, and so that
    pip installs into the workspace (it persists) and trusts what the proxy presents."""
    proxy = f"http://127.0.0.1:{port}"
    local = "localhost,127.0.0.1,::1"
    return {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "NO_PROXY": local,
        "no_proxy": local,
        "PYTHONUSERBASE": p.USER_BASE,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",  # /tmp is small and in memory; the workspace has a quota
        # Libraries that carry their own CA list (certifi, node) read these instead.
        "REQUESTS_CA_BUNDLE": p.CA_BUNDLE,
        "SSL_CERT_FILE": p.CA_BUNDLE,
        "NODE_EXTRA_CA_CERTS": p.CA_BUNDLE,
    }


def hung_up(sock: socket.socket) -> bool:
    """Whether the peer closed sock (an EOF waits in it), without taking anything from it."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
