"""Terminals (terminals.py) against the real executor, on the host and in a real cell: a shell
on a pseudo-terminal that knows its tty and size, is interrupted by Ctrl-C, gives its exit code,
survives its attachment and is ended by close; output under backpressure is complete and
bounded."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from agentcell.errors import Conflict, InvalidRequest, NotFound
from agentcell.executor.client import ExecutorClient
from agentcell.executor.duplex import SocketDuplex
from agentcell.executor.protocol import TERMINAL_SCROLLBACK, TERMINALS_MAX
from tests.executor.conftest import HostExecutor
from tests.gvisor import NO_SIGNALS_FROM_KEYS, TERMINALS_KILL_THE_SANDBOX

pytestmark = pytest.mark.asyncio
READ_TIMEOUT_S = 20.0


async def read_until(duplex: SocketDuplex, pattern: str) -> bytes:
    """What the terminal printed up to a match of ``pattern`` (a regex over the text)."""
    seen, found, start = bytearray(), re.compile(pattern.encode()), 0
    async with asyncio.timeout(READ_TIMEOUT_S):
        while not found.search(seen, start):
            start = max(0, len(seen) - 256)  # a flood is searched once, not again and again
            data = await duplex.recv()
            if not data:
                raise AssertionError(f"the terminal ended before {pattern!r}: {seen[-500:]!r}")
            seen += data
    return bytes(seen)


async def read_to_end(duplex: SocketDuplex) -> bytes:
    seen = b""
    async with asyncio.timeout(READ_TIMEOUT_S):
        while data := await duplex.recv():
            seen += data
    return seen


async def test_a_shell_on_a_tty_resizes_and_exits(executor: ExecutorClient) -> None:
    info, term = await executor.attach_terminal(cols=80, rows=24)
    try:
        assert (info.cols, info.rows, info.exit_code) == (80, 24, None)
        # Arithmetic in the commands: what is matched is the output, not the echoed input.
        await term.send(b"tty; echo tty-$((40+2)); stty size; echo size-$((1+1))\n")
        seen = await read_until(term, r"size-2")
        assert re.search(rb"/dev/pts/\d+", seen), seen
        assert re.search(rb"24 80\r?\n", seen), seen
        await executor.resize_terminal(info.terminal, 120, 40)
        await term.send(b"stty size; echo resized-$((2+2))\n")
        assert re.search(rb"40 120\r?\n", await read_until(term, r"resized-4")), "no resize"
        await term.send(b"echo $TERM $HOME; exit 3\n")
        rest = await read_to_end(term)  # the stream ends when the shell does
        assert b"xterm-256color /tmp" in rest
    finally:
        await term.close()
    closed = await executor.close_terminal(info.terminal)
    assert closed.exit_code == 3
    assert info.terminal not in [t.terminal for t in await executor.terminals()]


@pytest.mark.gvisor_xfail(reason=NO_SIGNALS_FROM_KEYS, raises=TimeoutError)
async def test_ctrl_c_interrupts_the_foreground_job(executor: ExecutorClient) -> None:
    info, term = await executor.attach_terminal()
    try:
        await term.send(b"sleep 60; echo not-interrupted-$((3+3))\n")
        await asyncio.sleep(0.5)
        await term.send(b"\x03")  # Ctrl-C: SIGINT to the foreground job only
        await term.send(b"echo alive-$((4+4))\n")
        after = await read_until(term, r"alive-8")
        assert b"not-interrupted-6" not in after
        assert b"^C" in after  # echoed as a control character
    finally:
        await term.close()
        await executor.close_terminal(info.terminal)


async def test_a_terminal_outlives_its_attachment(executor: ExecutorClient) -> None:
    info, first = await executor.attach_terminal()
    await first.send(b"cd /tmp && echo mark-$((6*7))\n")
    await read_until(first, r"mark-42")
    await first.close()  # a page reload: the terminal lives on, detached
    listed = {t.terminal: t for t in await executor.terminals()}
    assert info.terminal in listed
    again, second = await executor.attach_terminal(info.terminal, 100, 30)
    try:
        assert (again.pid, again.cols, again.rows) == (info.pid, 100, 30)
        assert b"mark-42" in await read_until(second, r"mark-42")  # the scrollback, replayed
        await second.send(b"pwd; echo same-$((1+2))\n")
        assert b"/tmp" in await read_until(second, r"same-3")  # the same shell
        _, third = await executor.attach_terminal(info.terminal)
        assert await read_to_end(second) is not None  # taken over: the second one ends
        await third.close()
    finally:
        await second.close()
    closed = await executor.close_terminal(info.terminal)
    assert closed.exit_code is not None  # killed
    with pytest.raises(NotFound):
        await executor.attach_terminal(info.terminal)
    with pytest.raises(NotFound):
        await executor.close_terminal("nope")


@pytest.mark.gvisor_xfail(reason=TERMINALS_KILL_THE_SANDBOX, run=False)
async def test_bad_sizes_and_too_many_terminals(executor: ExecutorClient) -> None:
    for cols, rows in ((0, 24), (80, 100_000), (True, 24)):
        with pytest.raises(InvalidRequest, match="columns and rows"):
            await executor.attach_terminal(cols=cols, rows=rows)
    opened = [await executor.attach_terminal() for _ in range(TERMINALS_MAX)]
    try:
        with pytest.raises(Conflict, match="close one first"):
            await executor.attach_terminal()
    finally:
        for info, duplex in opened:
            await duplex.close()
            await executor.close_terminal(info.terminal)


async def test_a_flood_is_complete_under_backpressure(executor: ExecutorClient) -> None:
    info, term = await executor.attach_terminal()
    size = 20_000_000
    try:
        await term.send(f"head -c {size} /dev/zero | tr '\\0' x; echo; exit\n".encode())
        await asyncio.sleep(1.0)  # not read meanwhile: the program waits, nothing is lost
        seen = await read_to_end(term)
        assert seen.count(b"x") >= size  # the echoed command line holds one more
    finally:
        await term.close()
        await executor.close_terminal(info.terminal)


async def test_a_detached_flood_keeps_only_the_scrollback(host_executor: HostExecutor) -> None:
    executor = host_executor.client
    rss_before = resident_kib(host_executor.process.pid)
    info, term = await executor.attach_terminal()
    await term.send(b"head -c 30000000 /dev/zero | tr '\\0' y; echo flood-$((5*5))\n")
    await term.close()  # detached: the output goes to the scrollback ring only
    await asyncio.sleep(3)
    _, term = await executor.attach_terminal(info.terminal)
    try:
        replayed = await read_until(term, r"flood-25")
    finally:
        await term.close()
        await executor.close_terminal(info.terminal)
    assert len(replayed) < 2 * TERMINAL_SCROLLBACK + 1024 * 1024
    assert resident_kib(host_executor.process.pid) - rss_before < 16 * 1024


def resident_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(row for row in status if row.startswith("VmRSS:")).split()[1])
