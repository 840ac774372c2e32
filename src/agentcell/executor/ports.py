"""The cell's listening ports, and connections to them for the host (DESIGN §11). Standard
library only.

A cell has no network interface, so the host reaches a server in it through the executor: a
``Connect`` request connects to ``127.0.0.1:port`` (or ``[::1]:port``, for servers that bind
"localhost" to IPv6 only) inside the cell, and hands the connection itself to the host with
its ``Ok`` (SCM_RIGHTS: the host then talks to the server directly, the cell still without an
interface); where it cannot (gVisor), the request's connection carries the bytes both ways.
``ListPorts`` reads /proc/net/tcp{,6}: what listens, and which program holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as p
from .conn import Conn, Fail
from .duplex import splice
from .tree import command_of

Handler = Callable[[Any, Conn], Awaitable[None]]
TOOK = b"T"  # the host's answer to Ok: it took the connection (else S: splice it)
CONNECT_TIMEOUT_S = 10.0  # a loopback connect answers at once, unless the server's backlog is full
LISTEN = "0A"  # the TCP state column of /proc/net/tcp
LOOPBACKS = (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6))
PROC_NET = (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6))


class Ports:
    def __init__(self) -> None:
        self.relays = 0  # connections relayed now

    def handlers(self) -> dict[type[p.Message], Handler]:
        return {p.Connect: self.connect, p.ListPorts: self.list}

    async def connect(self, req: p.Connect, conn: Conn) -> None:
        port = req.port
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise Fail("invalid_request", "port must be a number from 1 to 65535")
        if self.relays >= p.PORT_RELAYS_MAX:
            raise Fail("conflict", f"{p.PORT_RELAYS_MAX} connections are relayed already")
        sock = await open_local(port)
        self.relays += 1
        try:
            handed = hand_over(conn, sock)
            if not handed:
                conn.write(p.Ok().encode())
                await conn.drain()
            took = await conn.read_exactly(1)
            if took == TOOK:  # the host talks to the server itself now
                return
            leftover, conn.inbuf = bytes(conn.inbuf), bytearray()
            await splice(conn.sock, sock, leftover)
        finally:
            sock.close()
            self.relays -= 1

    async def list(self, _req: p.ListPorts, conn: Conn) -> None:
        conn.write(p.PortList(listening()).encode())


def hand_over(conn: Conn, sock: socket.socket) -> bool:
    """Send ``Ok`` with the connection itself (SCM_RIGHTS): the host then talks to the server
    in the cell directly, without this process in between. False where the fd cannot cross
    (gVisor's sockets are its own): the connection is spliced instead."""
    try:
        sent = conn.sock.sendmsg(
            [p.Ok().encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", [sock.fileno()]))]
        )
    except OSError:
        return False
    return sent == len(p.Ok().encode())


async def open_local(port: int) -> socket.socket:
    """A connection to the port on the cell's loopback, IPv4 first."""
    loop = asyncio.get_running_loop()
    why = "nothing listens there"
    for address, family in LOOPBACKS:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await loop.sock_connect(sock, (address, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            sock.close()
            why = f"its server did not accept within {CONNECT_TIMEOUT_S:g} s"
        except OSError:  # refused, or no IPv6 in this cell
            sock.close()
    raise Fail("port_closed", f"cannot connect to port {port} in the cell: {why}")


def listening() -> list[p.Port]:
    """TCP ports listening in the cell's network namespace, with the program that holds each
    (when it is ours to see), the executor's own (the egress forwarder) left out."""
    found: dict[int, p.Port] = {}
    owners = socket_owners()
    mine = str(os.getpid())
    for path, family in PROC_NET:
        for address, port, inode in read_listeners(path, family):
            pid, command = owners.get(inode, ("", ""))
            if pid == mine or (port in found and found[port].address in ("0.0.0.0", "::")):
                continue
            found[port] = p.Port(port, address, int(pid) if pid else None, command)
    return sorted(found.values(), key=lambda port: port.port)


def read_listeners(path: str, family: socket.AddressFamily) -> list[tuple[str, int, str]]:
    """(address, port, socket inode) of each listening socket in a /proc/net/tcp{,6} file."""
    try:
        with open(path) as file:
            rows = file.read().splitlines()[1:]
    except OSError:
        return []
    out = []
    for row in rows:
        fields = row.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        host, port = fields[1].split(":")
        out.append((address_of(host, family), int(port, 16), fields[9]))
    return out


def address_of(hex_address: str, family: socket.AddressFamily) -> str:
    """The text form of /proc/net's address column: 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if family == socket.AF_INET6 and words[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, words[12:])
    return socket.inet_ntop(family, words)


def socket_owners() -> dict[str, tuple[str, str]]:
    """Socket inode -> (pid, command line) for the processes whose fds we may read."""
    owners: dict[str, tuple[str, str]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owners.setdefault(target[8:-1], (pid, command_of(int(pid))))
    return owners
