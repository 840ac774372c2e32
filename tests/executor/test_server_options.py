"""Server options, on host-run servers of their own: ``--warm`` and ``--max-contexts``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agentcell.errors import InvalidRequest
from agentcell.executor.protocol import Exec, Output

from .conftest import HostExecutor, start_host_executor, stop_host_executor

Start = Callable[..., Awaitable[HostExecutor]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start servers with the given flags; they are stopped after the case."""
    started: list[HostExecutor] = []

    async def start(*flags: str) -> HostExecutor:
        base = tmp_path / f"server{len(started)}"
        base.mkdir()
        host = await start_host_executor(base, *flags)
        started.append(host)
        return host

    yield start
    for host in started:
        stop_host_executor(host)


def children(pid: int) -> list[int]:
    """The pids of pid's child processes."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def test_warm_starts_the_default_context_at_once(start: Start) -> None:
    cold, warm = await start(), await start("--warm")
    assert children(cold.process.pid) == []
    [kernel] = children(warm.process.pid)  # there before anything was asked
    code = "import os\nprint(os.getpid(), 'x' in globals())"
    first = await warm.client.exec(Exec(code))
    assert (first.stdout, first.exit_code, first.context_reset) == (f"{kernel} False\n", 0, False)
    other = await warm.client.exec(Exec(code, context="other"))  # other contexts start on demand
    assert other.stdout.split()[0] != str(kernel)


async def test_warm_default_context_takes_cwd_and_env(start: Start) -> None:
    host = await start("--warm")
    (host.workspace / "sub").mkdir()
    code = "import os\nprint(os.getcwd(), os.environ['FOO'])"
    result = await host.client.exec(Exec(code, cwd="sub", env={"FOO": "bar"}))
    assert result.stdout == f"{host.workspace / 'sub'} bar\n"


async def test_when_every_context_is_busy_a_new_one_is_refused(start: Start) -> None:
    host = await start("--max-contexts", "2")
    client = host.client
    code = "import time\nprint('started', flush=True)\ntime.sleep(120)"
    streams = [client.stream(Exec(code, context=name, timeout_s=120)) for name in ("a", "b")]
    for events in streams:
        assert isinstance(await anext(events), Output)
    with pytest.raises(InvalidRequest, match="busy"):
        await client.exec(Exec("print(1)", context="c"))
    for name in ("a", "b"):
        await client.interrupt(name)
    for events in streams:
        assert [e.kind async for e in events][-1] == "exit"
    third = await client.exec(Exec("print(1)", context="c"))  # "a" or "b" made room
    assert (third.stdout, third.context_reset) == ("1\n", False)
    # Whichever of "a" and "b" finished first made room; coming back, it says its state is gone.
    first = await client.exec(Exec("print(1)", context="a"))
    second = await client.exec(Exec("print(1)", context="b"))  # evicts again if "a" came back
    assert second.context_reset, (first, second)


async def test_concurrent_new_contexts_stay_within_the_limit(start: Start) -> None:
    host = await start("--max-contexts", "2")
    code = "import time\ntime.sleep(0.2)"
    results = await asyncio.gather(
        *(host.client.exec(Exec(code, context=f"c{i}")) for i in range(6)),
        return_exceptions=True,
    )
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InvalidRequest)]
    assert len(done) >= 2
    assert len(done) + len(refused) == 6
    assert len(children(host.process.pid)) <= 2


def test_max_contexts_must_be_positive(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "agentcell.executor.server", "--max-contexts", "0"]
    cmd += ["--socket", str(tmp_path / "s"), "--workspace", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--max-contexts" in result.stderr
