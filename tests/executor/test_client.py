"""Host-side cases: the client never follows a link the cell could plant in the control
directory, reports a silent executor as unreachable, and the server survives bad requests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentcell.errors import ExecutorError, ExecutorUnreachable
from agentcell.executor import client as client_module
from agentcell.executor.client import ExecutorClient
from agentcell.executor.protocol import SOCKET_NAME, Exec, Output
from tests.waiting import until

from .conftest import HostExecutor


@pytest.fixture
async def decoy(tmp_path: Path) -> AsyncIterator[tuple[Path, list[bytes]]]:
    """A listening socket that records every connection it gets."""
    path = tmp_path / "decoy.sock"
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(1000))
        writer.close()

    server = await asyncio.start_unix_server(record, path=str(path))
    yield path, received
    server.close()
    await server.wait_closed()


async def test_a_symlinked_socket_is_refused(
    tmp_path: Path, decoy: tuple[Path, list[bytes]]
) -> None:
    target, received = decoy
    control = tmp_path / "control"
    control.mkdir()
    (control / SOCKET_NAME).symlink_to(target)
    with pytest.raises(ExecutorUnreachable):
        await ExecutorClient(control).ping()
    # A marker connection of our own: once it is recorded, one made before it would be too.
    _, writer = await asyncio.open_unix_connection(str(target))
    writer.write(b"marker")
    await writer.drain()
    await until("the marker connection is recorded", lambda: b"marker" in received)
    writer.close()
    await writer.wait_closed()
    assert received == [b"marker"]


async def test_a_symlinked_socket_to_the_real_executor_is_refused(
    host_executor: HostExecutor, tmp_path: Path
) -> None:
    control = tmp_path / "control"
    control.mkdir()
    (control / SOCKET_NAME).symlink_to(host_executor.control_dir / SOCKET_NAME)
    with pytest.raises(ExecutorUnreachable):
        await ExecutorClient(control).exec(Exec("print(1)"))


async def test_missing_or_wrong_socket_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(ExecutorUnreachable, match="not answering"):
        await ExecutorClient(tmp_path / "nowhere").ping()
    (tmp_path / SOCKET_NAME).write_text("not a socket")
    with pytest.raises(ExecutorUnreachable):
        await ExecutorClient(tmp_path).ping()


async def test_stale_socket_is_unreachable(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / SOCKET_NAME))
    sock.close()  # bound, never listened: connection refused
    with pytest.raises(ExecutorUnreachable, match="not answering"):
        await ExecutorClient(tmp_path).ping()


async def test_hanging_up_before_exit_is_unreachable(decoy: tuple[Path, list[bytes]]) -> None:
    path, received = decoy
    control = path.parent / "hangup"
    control.mkdir()
    os.link(path, control / SOCKET_NAME)  # a hard link is a socket, not a link to follow
    with pytest.raises(ExecutorUnreachable, match="not answering"):
        await ExecutorClient(control).exec(Exec("print(1)"))
    assert len(received) == 1


async def test_server_answers_garbage_with_an_error(host_executor: HostExecutor) -> None:
    path = str(host_executor.control_dir / SOCKET_NAME)
    for line in (b"garbage\n", b'{"kind":"exit","exit_code":0,"duration_ms":0}\n', b"\n"):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(line)
        answer = json.loads(await reader.readline())
        writer.close()
        await writer.wait_closed()
        assert (answer["kind"], answer["code"]) == ("error", "invalid_request")
    assert (await host_executor.client.ping()).pid == host_executor.process.pid


async def test_many_calls_at_once(host_executor: HostExecutor) -> None:
    client = host_executor.client
    results = await asyncio.gather(
        *(client.exec(Exec(f"print({i})", context=f"many{i % 4}")) for i in range(40)),
        *(client.exec(Exec(f"echo {i}", language="shell")) for i in range(10)),
    )
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(40)] + [
        f"{i}\n" for i in range(10)
    ]


async def test_stream_events_are_output_then_exit(host_executor: HostExecutor) -> None:
    events = [e async for e in host_executor.client.stream(Exec("print('a')"))]
    assert isinstance(events[0], Output)
    assert events[-1].kind == "exit"


async def fake_executor(
    control: Path, answer: bytes, repeat: int = 1, then_wait: bool = False
) -> asyncio.Server:
    """A socket in control/ that answers every request with answer, repeat times."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        for _ in range(repeat):
            writer.write(answer)
            await writer.drain()
        if then_wait:
            await reader.read()
        writer.close()

    control.mkdir(exist_ok=True)
    return await asyncio.start_unix_server(serve, path=str(control / SOCKET_NAME))


async def test_a_silent_executor_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "PATIENCE_S", 0.2)
    server = await fake_executor(tmp_path, b"", then_wait=True)
    with pytest.raises(ExecutorUnreachable, match="silent"):
        await ExecutorClient(tmp_path).exec(Exec("print(1)", timeout_s=0.1))
    server.close()


async def test_an_executor_flooding_output_is_cut_off(tmp_path: Path) -> None:
    line = json.dumps({"kind": "output", "stream": "stdout", "data": "x" * 1000}).encode() + b"\n"
    server = await fake_executor(tmp_path, line, repeat=100)
    with pytest.raises(ExecutorError, match="more output than the limit"):
        await ExecutorClient(tmp_path).exec(Exec("print(1)", output_limit=10_000))
    server.close()


async def test_garbage_from_the_executor_is_an_executor_error(tmp_path: Path) -> None:
    server = await fake_executor(tmp_path, b"this is not json\n")
    with pytest.raises(ExecutorError, match="garbage"):
        await ExecutorClient(tmp_path).ping()
    server.close()


def test_the_socket_is_private(host_executor: HostExecutor) -> None:
    mode = (host_executor.control_dir / SOCKET_NAME).stat().st_mode
    assert mode & 0o777 == 0o600
