"""Ports (ports.py) against the real executor, on the host and in real cells: what listens, a
connection to it (handed over to the host where the kernel lets the fd cross, spliced by the
executor under gVisor: the same bytes either way), and a port nobody listens on."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agentcell.errors import PortClosed
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import Exec

pytestmark = pytest.mark.asyncio
ECHO = """
import socket, threading
server = socket.create_server(("127.0.0.1", {port}))
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()
"""


async def test_a_connection_to_a_port_of_the_cell(
    executor: ExecutorClient, request: pytest.FixtureRequest
) -> None:
    port = 18_000 + id(executor) % 1000
    script = f"python3 -c '{ECHO.format(port=port)}' &"
    started = await executor.exec(Exec(code=script, language="shell", background=True))
    assert started.exit_code == 0, started
    async with asyncio.timeout(20):
        while port not in [p.port for p in await executor.list_ports()]:
            await asyncio.sleep(0.05)
    listed = next(p for p in await executor.list_ports() if p.port == port)
    assert listed.address == "127.0.0.1"
    assert "python3" in listed.command
    duplex = await executor.connect(port)
    try:
        # Handed over: the host holds the TCP connection itself; under gVisor, spliced.
        spliced = "[gvisor]" in request.node.name
        assert duplex.sock.family == (socket.AF_UNIX if spliced else socket.AF_INET)
        blob = bytes(range(256)) * 4096
        await duplex.send(blob)
        got = b""
        async with asyncio.timeout(20):
            while len(got) < len(blob):
                got += await duplex.recv()
        assert got == blob
        await duplex.send_eof()
        async with asyncio.timeout(20):
            assert await duplex.recv() == b""  # the server's end, after ours
    finally:
        await duplex.close()
    with pytest.raises(PortClosed, match="nothing listens"):
        await executor.connect(9)
    await executor.exec(
        Exec(code=f"pkill -f 'create_server..127.0.0.1., {port}'", language="shell")
    )
