"""The egress channel (DESIGN §10): a program in the cell connects to 127.0.0.1:EGRESS_PORT, and
the host, holding ``egress()``, gets that connection as a Duplex. The cases run against the
host-run server (on a free port of its own: the host's 3128 is not ours) and in real cells, as
the other executor cases do; the programs in the cell are ``python3 -c`` with plain sockets."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agentcell.errors import Conflict, NotFound
from agentcell.executor.client import ExecutorClient
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import (
    EGRESS_OFFER_TTL_S,
    EGRESS_PORT,
    EgressAccept,
    EgressListen,
    EgressOffer,
    Exec,
    Ok,
)
from tests.executor.conftest import (
    DockerExecutor,
    HostExecutor,
    start_host_executor,
    stop_host_executor,
)

Handler = Callable[[Duplex], Awaitable[None]]

# What every program in the cell starts with: talk() sends data, then its EOF, while reading the
# answer to its end on a thread (so that neither way waits for the other).
CLIENT = """
import hashlib, socket, sys, threading
PORT = {port}

def connect():
    return socket.create_connection(("127.0.0.1", PORT), timeout=30)

def talk(data):
    s = connect()
    got = []
    def read():
        while b := s.recv(1 << 16):
            got.append(b)
    reader = threading.Thread(target=read)
    reader.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    reader.join()
    s.close()
    return b"".join(got)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def host_egress_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
async def host_executor(
    tmp_path_factory: pytest.TempPathFactory, host_egress_port: int
) -> AsyncIterator[HostExecutor]:
    """As conftest's, with the forwarder on a free port of the host's loopback."""
    base = tmp_path_factory.mktemp("executor")
    host = await start_host_executor(base, "--egress-port", str(host_egress_port))
    yield host
    stop_host_executor(host)


@pytest.fixture
def port(executor_backend: HostExecutor | DockerExecutor, request: pytest.FixtureRequest) -> int:
    if isinstance(executor_backend, HostExecutor):
        return int(request.getfixturevalue("host_egress_port"))
    return EGRESS_PORT


async def in_cell(executor: ExecutorClient, port: int, code: str) -> str:
    """Run CLIENT + code with python3 -c in the cell; its stdout (a failure shows its stderr)."""
    script = CLIENT.format(port=port) + code
    result = await executor.exec(Exec(f"python3 -c {shlex.quote(script)}", "shell", timeout_s=60))
    assert result.exit_code == 0, result.stderr
    return result.stdout


async def echo(duplex: Duplex) -> None:
    try:
        while data := await duplex.recv():
            await duplex.send(data)
        await duplex.send_eof()
    finally:
        await duplex.close()


@contextlib.asynccontextmanager
async def serving(executor: ExecutorClient, handler: Handler = echo) -> AsyncIterator[list[str]]:
    """The cell's egress listened for, each connection handled by handler in a task of its
    own; yields the ids of the connections taken so far."""
    taken: list[str] = []
    async with executor.egress() as conns:

        async def take() -> None:
            async with asyncio.TaskGroup() as group:
                async for duplex in conns:
                    taken.append(duplex.id)
                    group.create_task(handler(duplex))

        taking = asyncio.create_task(take())
        try:
            yield taken
        finally:
            taking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taking


async def test_small_and_10_mb_round_trips(executor: ExecutorClient, port: int) -> None:
    code = """
import os
for size in (5, 10 * 2**20):
    data = os.urandom(size)
    back = talk(data)
    print(len(back), hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest())
"""
    async with serving(executor) as taken:
        out = await in_cell(executor, port, code)
    assert out.split("\n") == ["5 True", f"{10 * 2**20} True", ""]
    assert len(taken) == 2


async def test_20_connections_at_once(executor: ExecutorClient, port: int) -> None:
    code = """
import os
from concurrent.futures import ThreadPoolExecutor
datas = [os.urandom(100_000 + i) for i in range(20)]
with ThreadPoolExecutor(20) as pool:
    backs = list(pool.map(talk, datas))
print(sum(a == b for a, b in zip(datas, backs)))
"""
    async with serving(executor) as taken:
        out = await in_cell(executor, port, code)
    assert out == "20\n"
    assert len(set(taken)) == 20


async def test_half_close_each_way(executor: ExecutorClient, port: int) -> None:
    """The cell's EOF reaches the host, which answers after it; the host's EOF reaches the
    cell, which sends after it."""
    heard: list[bytes] = []

    async def handler(duplex: Duplex) -> None:
        if not heard:  # the first: the cell sends, then its EOF; the host answers after it
            heard.append(b"".join([b async for b in chunks(duplex)]))
            await duplex.send(b"host-after-eof")
        else:  # the second: the host ends its side first; the cell goes on sending
            await duplex.send(b"host-done")
            await duplex.send_eof()
            heard.append(b"".join([b async for b in chunks(duplex)]))
        await duplex.close()

    code = """
s = connect()
s.sendall(b"cell-first")
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode(), s.recv(100) == b"")
s.close()
s = connect()
s.sendall(b"go")
got = b""
while b := s.recv(100):
    got += b
s.sendall(b"cell-after-eof")
s.shutdown(socket.SHUT_WR)
print(got.decode(), s.recv(100) == b"")
"""
    async with serving(executor, handler):
        out = await in_cell(executor, port, code)
        async with asyncio.timeout(10):
            while len(heard) < 2:
                await asyncio.sleep(0.01)
    assert out == "host-after-eof True\nhost-done True\n"
    assert heard == [b"cell-first", b"gocell-after-eof"]


async def chunks(duplex: Duplex) -> AsyncIterator[bytes]:
    while data := await duplex.recv():
        yield data


# Tries to connect; prints "refused" or "connected".
PROBE = """
try:
    connect().close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
"""


async def test_nothing_listens_until_asked_and_after(executor: ExecutorClient, port: int) -> None:
    assert await in_cell(executor, port, PROBE) == "refused\n"
    async with serving(executor):
        assert await in_cell(executor, port, PROBE) == "connected\n"
    # The forwarder stops as soon as it sees the host hang up.
    deadline = time.monotonic() + 5
    while (out := await in_cell(executor, port, PROBE)) != "refused\n":
        assert time.monotonic() < deadline, out
        await asyncio.sleep(0.05)


async def test_one_listen_at_a_time(executor: ExecutorClient) -> None:
    async with executor.egress():
        with pytest.raises(Conflict):
            async with executor.egress():
                pass
    async with executor.egress():  # free again once the first is gone
        pass


async def test_an_offer_nobody_takes_is_dropped(executor: ExecutorClient, port: int) -> None:
    """The host listens by hand and leaves the offer: after EGRESS_OFFER_TTL_S the cell's
    client sees its connection closed, and the offer can no longer be taken."""
    conn = await executor._open(EgressListen())
    try:
        assert isinstance(await conn.event(), Ok)
        code = """
import time
s = connect()
s.sendall(b"anyone?")
start = time.monotonic()
try:
    got = s.recv(100)
except ConnectionResetError:  # closed with "anyone?" unread
    got = b""
print(got, time.monotonic() - start)
"""
        run = asyncio.create_task(in_cell(executor, port, code))
        offer = await conn.expect(EgressOffer)
        got, waited = (await run).split()
        assert got == "b''"
        assert float(waited) > EGRESS_OFFER_TTL_S - 0.5  # dropped by the timer, not at once
        with pytest.raises(NotFound):
            await executor._call(EgressAccept(offer.id), Ok)
    finally:
        conn.close()


# The cell's network interfaces, from /proc/net/dev (gVisor has no /sys/class/net).
INTERFACES = """
print([line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]])
"""


async def test_the_cell_has_only_loopback(
    executor_backend: HostExecutor | DockerExecutor, executor: ExecutorClient
) -> None:
    if isinstance(executor_backend, HostExecutor):
        pytest.skip("the host's own interfaces are not a cell's")
    async with serving(executor):
        out = await in_cell(executor, EGRESS_PORT, INTERFACES)
    assert out == "['lo']\n"
