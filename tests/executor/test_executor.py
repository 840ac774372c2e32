"""The executor's cases. They use only the ``executor`` client and workspace-relative paths, so
the same cases run against the host-run server and against a real cell (see conftest.py).
Timeouts in requests are guards, never timing assertions."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest

from agentcell.errors import (
    ExecutorUnreachable,
    FileTooLarge,
    InvalidPath,
    InvalidRequest,
    PathNotFound,
    UnsupportedFileType,
)
from agentcell.executor.client import ExecutorClient
from agentcell.executor.contexts import MAX_CONTEXTS
from agentcell.executor.protocol import CHUNK_BYTES, VERSION, Exec, Exit, Language, Output
from tests.gvisor import OOM_KILLS_THE_SANDBOX

# Prints "dead" once the process whose pid is in ./bg.pid is gone (or a zombie about to be
# reaped), "alive" if it is not within 5 s. Python, polling: no process started per look.
GONE = """
import time
pid = open('bg.pid').read().strip()
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        stat = open(f'/proc/{pid}/stat').read()
    except OSError:
        break
    if stat[stat.rfind(')') + 2] == 'Z':
        break
    time.sleep(0.01)
else:
    print('alive')
    raise SystemExit
print('dead')
"""


HOG = 'chunks = [b"x" * 2**26 for _ in range(10**6)]'  # touched pages, until the OOM killer comes


OPENED: set[str] = set()  # python contexts to close after the case: a cell's memory is small


@pytest.fixture(autouse=True)
async def _close_contexts(executor: ExecutorClient) -> AsyncIterator[None]:
    yield
    while OPENED:
        await executor.close_context(OPENED.pop())


def fresh() -> str:
    """A context or directory name of its own, so that cases do not share state."""
    return f"t{secrets.token_hex(4)}"


def py(code: str, context: str = "", **kw: object) -> Exec:
    context = context or fresh()
    OPENED.add(context)
    return Exec(code, "python", context, **kw)  # type: ignore[arg-type]


def sh(code: str, **kw: object) -> Exec:
    return Exec(code, "shell", **kw)  # type: ignore[arg-type]


async def collect(events: AsyncIterator[Output | Exit]) -> tuple[list[Output], Exit]:
    items = [event async for event in events]
    assert isinstance(items[-1], Exit)
    outputs = [event for event in items[:-1] if isinstance(event, Output)]
    assert len(outputs) == len(items) - 1
    return outputs, items[-1]


async def test_ping(executor: ExecutorClient) -> None:
    pong = await executor.ping()
    assert pong.version == VERSION
    assert pong.pid > 0


# --- python ------------------------------------------------------------------------------------


async def test_python_state_persists(executor: ExecutorClient) -> None:
    ctx = fresh()
    first = await executor.exec(py("x = 41", ctx))
    assert (first.exit_code, first.stdout, first.stderr) == (0, "", "")
    second = await executor.exec(py("print(x + 1)", ctx))
    assert (second.exit_code, second.stdout, second.context_reset) == (0, "42\n", False)


async def test_contexts_are_separate(executor: ExecutorClient) -> None:
    one, other = fresh(), fresh()
    await executor.exec(py("x = 1", one))
    assert (await executor.exec(py("print('x' in globals())", other))).stdout == "False\n"


@pytest.mark.parametrize(
    ("code", "stdout"),
    [("a = [1, 'b']\na", "[1, 'b']\n"), ("None", ""), ("x = 3", ""), ("print(1)\n2 + 3", "1\n5\n")],
)
async def test_last_expression_is_shown(executor: ExecutorClient, code: str, stdout: str) -> None:
    assert (await executor.exec(py(code))).stdout == stdout


async def test_exception_shows_traceback_and_context_survives(executor: ExecutorClient) -> None:
    ctx = fresh()
    failed = await executor.exec(py("y = 5\ndef f():\n    return 1 / 0\nf()", ctx))
    assert failed.exit_code == 1
    assert failed.stderr.startswith("Traceback")
    assert "ZeroDivisionError" in failed.stderr
    assert "return 1 / 0" in failed.stderr
    assert "kernel.py" not in failed.stderr
    assert (await executor.exec(py("print(y)", ctx))).stdout == "5\n"


async def test_syntax_error(executor: ExecutorClient) -> None:
    result = await executor.exec(py("def (:"))
    assert result.exit_code == 1
    assert "SyntaxError" in result.stderr
    assert "kernel.py" not in result.stderr
    assert "ast.py" not in result.stderr


async def test_system_exit_sets_the_exit_code(executor: ExecutorClient) -> None:
    ctx = fresh()
    await executor.exec(py("kept = 1", ctx))
    result = await executor.exec(py("raise SystemExit(3)", ctx))
    assert (result.exit_code, result.context_reset) == (3, False)
    assert (await executor.exec(py("import sys\nsys.exit()", ctx))).exit_code == 0
    assert (await executor.exec(py("print(kept)", ctx))).stdout == "1\n"


async def test_dead_context_is_reported_and_replaced(executor: ExecutorClient) -> None:
    ctx = fresh()
    await executor.exec(py("kept = 1", ctx))
    exited = await executor.exec(py("import os\nos._exit(7)", ctx))
    assert (exited.exit_code, exited.context_reset, exited.oom_killed) == (7, True, False)
    killed = await executor.exec(py("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", ctx))
    assert (killed.exit_code, killed.context_reset) == (-9, True)
    after = await executor.exec(py("print('kept' in globals())", ctx))
    assert (after.stdout, after.context_reset) == ("False\n", False)


@pytest.mark.gvisor_xfail(reason=OOM_KILLS_THE_SANDBOX, raises=ExecutorUnreachable)
@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", HOG),
        ("shell", f"python3 -c '{HOG}'; exit $?"),
    ],
    ids=["python", "shell"],
)
async def test_out_of_memory_is_reported(
    executor: ExecutorClient, request: pytest.FixtureRequest, language: Language, code: str
) -> None:
    if request.node.callspec.params.get("executor_backend") == "host":
        pytest.skip("needs a memory-limited cell")
    result = await executor.exec(Exec(code, language, "oom", timeout_s=60))
    OPENED.add("oom")
    assert result.oom_killed
    assert not result.timed_out
    if language == "python":
        assert (result.exit_code, result.context_reset) == (-9, True)
    else:
        assert result.exit_code == 137  # bash tells of its child killed by SIGKILL
    assert (await executor.ping()).pid > 0  # the server itself survived


async def test_close_context(executor: ExecutorClient) -> None:
    ctx = fresh()
    await executor.exec(py("kept = 1", ctx))
    await executor.close_context(ctx)
    await executor.close_context(ctx)  # closing twice, or an unknown context, is fine
    assert (await executor.exec(py("print('kept' in globals())", ctx))).stdout == "False\n"


async def test_context_is_a_process_group_of_its_own(executor: ExecutorClient) -> None:
    server = (await executor.ping()).pid
    code = "import os\nprint(os.getpid(), os.getpgid(0), os.getsid(0))"
    one = (await executor.exec(py(code))).stdout.split()
    other = (await executor.exec(py(code))).stdout.split()
    assert len(set(one)) == len(set(other)) == 1  # pid = process group = session
    assert one != other
    assert str(server) not in one + other


async def test_context_starts_clean(executor: ExecutorClient) -> None:
    code = (
        "import os, signal, sys\n"
        "print(sorted(int(fd) for fd in os.listdir('/proc/self/fd'))[:4])\n"
        "print(len(os.listdir('/proc/self/fd')))\n"
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n"
        "print(open('/proc/self/oom_score_adj').read().strip())\n"
        "print(sys.stdin.read() == '', sys.argv)\n"
        "import asyncio\n"
        "async def f():\n"
        "    await asyncio.sleep(0)\n"
        "    return 'loop'\n"
        "print(asyncio.run(f()))"
    )
    result = await executor.exec(py(code))
    assert (result.exit_code, result.stderr) == (0, "")
    # stdin, stdout, stderr, the control socket, and the fd that lists them: nothing else
    assert result.stdout.splitlines() == ["[0, 1, 2, 3]", "5", "True", "500", "True ['']", "loop"]


async def test_random_differs_between_fresh_contexts(executor: ExecutorClient) -> None:
    code = "import random\nprint(random.random())"
    assert (await executor.exec(py(code))).stdout != (await executor.exec(py(code))).stdout


async def test_close_context_kills_its_background_children(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/.keep", b"")
    ctx = fresh()
    code = (
        "import subprocess\nopen('bg.pid', 'w').write(str(subprocess.Popen(['sleep', '300']).pid))"
    )
    assert (await executor.exec(py(code, ctx, cwd=d))).exit_code == 0
    await executor.close_context(ctx)
    assert (await executor.exec(py(GONE, cwd=d, timeout_s=30))).stdout == "dead\n"


async def test_a_dead_contexts_background_children_are_killed(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/.keep", b"")
    code = (
        "import os, subprocess\n"
        "open('bg.pid', 'w').write(str(subprocess.Popen(['sleep', '300']).pid))\n"
        "os._exit(0)"
    )
    assert (await executor.exec(py(code, cwd=d))).context_reset
    assert (await executor.exec(py(GONE, cwd=d, timeout_s=30))).stdout == "dead\n"


async def test_least_recently_used_idle_context_makes_room(executor: ExecutorClient) -> None:
    names = [fresh() for _ in range(MAX_CONTEXTS + 1)]
    for i, name in enumerate(names):  # the last one closes the first (or an older one)
        await executor.exec(py(f"kept = {i}", name))
    for i, name in enumerate(names[1:], start=1):
        kept = await executor.exec(py("print(kept)", name))
        assert (kept.stdout, kept.context_reset) == (f"{i}\n", False)
    first = await executor.exec(py("print('kept' in globals())", names[0]))
    assert (first.stdout, first.context_reset) == ("False\n", True)
    again = await executor.exec(py("print(1)", names[0]))
    assert again.context_reset is False


async def test_a_busy_context_is_never_closed_for_room(executor: ExecutorClient) -> None:
    busy = fresh()
    await executor.exec(py("kept = 7", busy))
    code = "import time\nprint('started', flush=True)\ntime.sleep(120)"
    events = executor.stream(py(code, busy, timeout_s=120))
    assert isinstance(await anext(events), Output)
    for _ in range(MAX_CONTEXTS):
        assert (await executor.exec(py("x = 1"))).exit_code == 0
    await executor.interrupt(busy)
    _, exit_ = await collect(events)
    assert (exit_.exit_code, exit_.context_reset) == (1, False)
    assert (await executor.exec(py("print(kept)", busy))).stdout == "7\n"


# --- shell -------------------------------------------------------------------------------------


async def test_shell_exit_code_and_streams(executor: ExecutorClient) -> None:
    result = await executor.exec(sh("echo out; echo err >&2; exit 3"))
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


async def test_shell_env_and_cwd(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/sub/.keep", b"")
    result = await executor.exec(sh("echo $FOO; echo $HOME; pwd", env={"FOO": "bar"}, cwd=d))
    foo, home, cwd = result.stdout.splitlines()
    assert (foo, home) == ("bar", "/tmp")
    assert cwd.endswith(f"/{d}")
    nested = await executor.exec(sh("pwd", cwd=f"/workspace/{d}/sub"))
    assert nested.stdout.endswith(f"/{d}/sub\n")
    with pytest.raises(InvalidPath):
        await executor.exec(sh("pwd", cwd="/etc"))
    with pytest.raises(PathNotFound):
        await executor.exec(sh("pwd", cwd=f"{d}/missing"))


async def test_background_process_does_not_block(executor: ExecutorClient) -> None:
    result = await executor.exec(sh("sleep 30 & echo done", timeout_s=20))
    assert (result.exit_code, result.stdout, result.timed_out) == (0, "done\n", False)


async def test_background_process_lives_on_and_may_write(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/.keep", b"")
    job = "(sleep 0.3; echo late; echo late >&2; touch lived) & echo"
    started = await executor.exec(sh(job, cwd=d, background=True))
    assert started.exit_code == 0
    wait = "for i in $(seq 100); do [ -e lived ] && echo lived && exit; sleep 0.1; done"
    assert (await executor.exec(sh(wait, cwd=d, timeout_s=30))).stdout == "lived\n"


async def test_shell_timeout_kills_the_process_group(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/.keep", b"")
    result = await executor.exec(sh("sleep 300 & echo $! > bg.pid; wait", cwd=d, timeout_s=0.5))
    assert (result.timed_out, result.exit_code) == (True, 124)
    assert result.stderr == "agentcell: timed out after 0.5 s\n"
    # The background sleep was in the group: it is gone.
    assert (await executor.exec(py(GONE, cwd=d, timeout_s=30))).stdout == "dead\n"


async def test_leaving_a_shell_stream_kills_its_group(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/.keep", b"")
    events = executor.stream(sh("sleep 300 & echo $! > bg.pid; echo started; wait", cwd=d))
    assert isinstance(await anext(events), Output)
    await events.aclose()
    assert (await executor.exec(py(GONE, cwd=d, timeout_s=30))).stdout == "dead\n"


async def test_unknown_language_is_refused(executor: ExecutorClient) -> None:
    with pytest.raises(InvalidRequest):
        await executor.exec(Exec("1", "ruby"))  # type: ignore[arg-type]


# --- timeouts and interrupts -------------------------------------------------------------------


async def test_python_timeout_interrupts_and_keeps_state(executor: ExecutorClient) -> None:
    ctx = fresh()
    await executor.exec(py("kept = 7", ctx))
    result = await executor.exec(py("print('hi', end='')\nwhile True: pass", ctx, timeout_s=0.5))
    assert (result.timed_out, result.exit_code, result.context_reset) == (True, 124, False)
    assert result.stderr == "agentcell: timed out after 0.5 s\n"  # no KeyboardInterrupt
    assert (await executor.exec(py("print(kept)", ctx))).stdout == "7\n"


async def test_python_ignoring_interrupts_is_killed(executor: ExecutorClient) -> None:
    ctx = fresh()
    await executor.exec(py("kept = 7", ctx))
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    result = await executor.exec(py(code, ctx, timeout_s=0.5))
    assert (result.timed_out, result.exit_code, result.context_reset) == (True, 124, True)
    assert result.stderr == (
        f"agentcell: timed out after 0.5 s; python context {ctx!r} did not stop on interrupt "
        "and was reset\n"
    )
    after = await executor.exec(py("print('kept' in globals())", ctx))
    assert (after.exit_code, after.stdout, after.context_reset) == (0, "False\n", False)


async def test_interrupt_request(executor: ExecutorClient) -> None:
    ctx = fresh()
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    events = executor.stream(py(code, ctx, timeout_s=60))
    first = await anext(events)
    assert isinstance(first, Output)
    assert first.data == "started\n"
    await executor.interrupt(ctx)
    outputs, exit_ = await collect(events)
    assert (exit_.exit_code, exit_.timed_out, exit_.context_reset) == (1, False, False)
    assert "KeyboardInterrupt" in "".join(o.data for o in outputs if o.stream == "stderr")


async def test_leaving_a_stream_stops_the_code(executor: ExecutorClient) -> None:
    ctx = fresh()
    code = "import time\nprint('started', flush=True)\nwhile True: time.sleep(0.01)"
    events = executor.stream(py(code, ctx, timeout_s=60))
    assert isinstance(await anext(events), Output)
    await events.aclose()
    # The context was interrupted, not killed: it is free again, with its state.
    result = await executor.exec(py("print('time' in globals())", ctx, timeout_s=30))
    assert (result.stdout, result.timed_out) == ("True\n", False)


# --- output ------------------------------------------------------------------------------------


async def test_output_streams_before_exit(executor: ExecutorClient) -> None:
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
    outputs, exit_ = await collect(executor.stream(py(code)))
    assert exit_.exit_code == 0
    assert len(outputs) >= 2
    assert "".join(o.data for o in outputs) == "0\n1\n2\n"


async def test_output_cap_truncates_honestly(executor: ExecutorClient) -> None:
    big = await executor.exec(py("print('x' * 100_000)", output_limit=1000))
    assert big.truncated
    assert big.stdout == "x" * 1000
    both = await executor.exec(
        sh("yes out | head -c 50000; yes err | head -c 50000 >&2", output_limit=1000)
    )
    assert both.truncated
    assert len(both.stdout.encode()) + len(both.stderr.encode()) <= 1000
    exact = await executor.exec(py("print('ab')", output_limit=3))
    assert (exact.stdout, exact.truncated) == ("ab\n", False)
    small = await executor.exec(sh("echo hi", output_limit=1000))
    assert (small.stdout, small.truncated) == ("hi\n", False)


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "import sys\n_ = sys.stdout.write('x' * 10_000_000)"),
        ("shell", "head -c 10000000 /dev/zero | tr '\\0' x"),
    ],
    ids=["python", "shell"],
)
async def test_ten_megabytes_stream_completely(
    executor: ExecutorClient, language: Language, code: str
) -> None:
    received = events = 0
    async for event in executor.stream(Exec(code, language, "default", timeout_s=120)):
        if isinstance(event, Output):
            received += len(event.data.encode())
            events += 1
        else:
            assert (event.exit_code, event.truncated) == (0, False)
    assert received == 10_000_000
    assert events > 1


async def test_unicode_split_across_reads(executor: ExecutorClient) -> None:
    text = "é€😀"
    code = (
        "import sys, time\n"
        f"data = {text!r}.encode()\n"
        "for i in range(len(data)):\n"
        "    sys.stdout.buffer.write(data[i:i + 1]); sys.stdout.buffer.flush(); time.sleep(0.02)"
    )
    assert (await executor.exec(py(code))).stdout == text
    many = await executor.exec(py("print('€' * 100_000)"))
    assert many.stdout == "€" * 100_000 + "\n"
    bad = await executor.exec(sh("printf 'a\\377b'"))
    assert bad.stdout == "a\ufffdb"


# --- files -------------------------------------------------------------------------------------


async def test_write_read_round_trip(executor: ExecutorClient) -> None:
    d = fresh()
    data = os.urandom(2 * CHUNK_BYTES + 123)
    assert await executor.write(f"{d}/blob.bin", data) == len(data)
    assert await executor.read_bytes(f"{d}/blob.bin") == data
    chunks = [chunk async for chunk in executor.read(f"{d}/blob.bin")]
    assert len(chunks) > 1
    assert b"".join(chunks) == data

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    assert await executor.write(f"{d}/blob.bin", pieces()) == len(data)  # replaces it
    assert await executor.read_bytes(f"{d}/blob.bin") == data
    assert await executor.write(f"{d}/empty", b"") == 0
    assert await executor.read_bytes(f"{d}/empty") == b""
    with pytest.raises(FileTooLarge):
        await executor.read_bytes(f"{d}/blob.bin", max_bytes=1000)


async def test_files_written_are_seen_by_code(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/in.txt", b"hello")
    result = await executor.exec(py(f"open('{d}/in.txt').read()"))
    assert result.stdout == "'hello'\n"
    await executor.exec(sh(f"printf made > {d}/out.txt"))
    assert await executor.read_bytes(f"{d}/out.txt") == b"made"


async def test_list(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/b.txt", b"abc")
    await executor.write(f"{d}/sub/c.txt", b"")
    await executor.exec(sh(f"cd {d} && ln -s b.txt link && mkfifo fifo"))
    entries = await executor.list(d)
    kinds = [(e.name, e.path, e.type) for e in entries]
    assert kinds == [
        ("b.txt", f"{d}/b.txt", "file"),
        ("fifo", f"{d}/fifo", "other"),
        ("link", f"{d}/link", "link"),
        ("sub", f"{d}/sub", "dir"),
    ]
    assert entries[0].size == 3
    assert entries[0].modified_at > 0
    [single] = await executor.list(f"{d}/b.txt")
    assert (single.path, single.type, single.size) == (f"{d}/b.txt", "file", 3)
    assert d in [e.name for e in await executor.list(".")]
    assert d in [e.name for e in await executor.list("")]


async def test_make_parents(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/x/y/z.txt", b"hi")
    assert [e.name for e in await executor.list(f"{d}/x/y")] == ["z.txt"]
    with pytest.raises(PathNotFound):
        await executor.write(f"{d}/missing/z.txt", b"hi", make_parents=False)


async def test_delete(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/full/a.txt", b"a")
    await executor.write(f"{d}/file.txt", b"f")
    await executor.exec(sh(f"cd {d} && ln -s file.txt link && mkdir empty"))
    await executor.delete(f"{d}/link")
    assert await executor.read_bytes(f"{d}/file.txt") == b"f"  # the link went, not its target
    await executor.delete(f"{d}/file.txt")
    await executor.delete(f"{d}/empty")
    with pytest.raises(InvalidRequest):
        await executor.delete(f"{d}/full")
    await executor.delete(f"{d}/full", recursive=True)
    assert await executor.list(d) == []
    with pytest.raises(PathNotFound):
        await executor.delete(f"{d}/full")
    for root in (".", "", "./"):
        with pytest.raises(InvalidPath):
            await executor.delete(root, recursive=True)


async def test_writing_onto_a_directory_or_link_is_refused(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.write(f"{d}/sub/a.txt", b"a")
    await executor.exec(sh(f"cd {d} && ln -s sub/a.txt link"))
    with pytest.raises(InvalidRequest):
        await executor.write(f"{d}/sub", b"x")
    with pytest.raises(UnsupportedFileType):
        await executor.write(f"{d}/link", b"x")
    assert await executor.read_bytes(f"{d}/sub/a.txt") == b"a"
    with pytest.raises(InvalidRequest):
        await executor.read_bytes(f"{d}/sub")


@pytest.mark.parametrize("path", ["../outside", "a/../../x", "a/..", "/etc/passwd", "a\0b"])
async def test_paths_that_leave_the_workspace_are_refused(
    executor: ExecutorClient, path: str
) -> None:
    with pytest.raises(InvalidPath):
        await executor.read_bytes(path)
    with pytest.raises(InvalidPath):
        await executor.write(path, b"x")
    with pytest.raises(InvalidPath):
        await executor.list(path)
    with pytest.raises(InvalidPath):
        await executor.delete(path)


async def test_links_out_of_the_workspace_are_not_followed(executor: ExecutorClient) -> None:
    d = fresh()
    outside = f"/tmp/agentcell-test-{d}"
    await executor.exec(sh(f"mkdir -p {outside} && echo secret > {outside}/s.txt"))
    await executor.exec(
        sh(
            f"mkdir {d} && cd {d} && ln -s /etc/passwd passwd && ln -s / root"
            f" && ln -s {outside}/s.txt secret && ln -s {outside} out"
        )
    )
    for path in (f"{d}/passwd", f"{d}/root/etc/passwd", f"{d}/secret", f"{d}/out/s.txt"):
        with pytest.raises(InvalidPath):
            await executor.read_bytes(path)
    with pytest.raises(InvalidPath):
        await executor.list(f"{d}/root/etc")
    with pytest.raises(InvalidPath):
        await executor.write(f"{d}/out/s.txt", b"overwritten")
    with pytest.raises(UnsupportedFileType):
        await executor.write(f"{d}/secret", b"overwritten")  # a link is never written through
    assert (await executor.exec(sh(f"cat {outside}/s.txt"))).stdout == "secret\n"
    await executor.delete(f"{d}/secret")  # deleting the link itself is fine
    await executor.exec(sh(f"rm -r {outside}"))


async def test_fifo_is_refused_without_hanging(executor: ExecutorClient) -> None:
    d = fresh()
    await executor.exec(sh(f"mkdir {d} && mkfifo {d}/fifo"))
    async with asyncio.timeout(30):
        with pytest.raises(UnsupportedFileType):
            await executor.read_bytes(f"{d}/fifo")
        with pytest.raises(UnsupportedFileType):
            await executor.write(f"{d}/fifo", b"x")


async def test_missing_paths(executor: ExecutorClient) -> None:
    with pytest.raises(PathNotFound):
        await executor.read_bytes("no/such/file")
    with pytest.raises(PathNotFound):
        await executor.list("no/such/dir")
    with pytest.raises(PathNotFound):
        await executor.delete("no-such-file")


async def test_overlong_names_and_deep_paths_are_clear_errors(executor: ExecutorClient) -> None:
    long_name = "n" * 250  # valid, but a temp name built from it would not be
    assert await executor.write(long_name, b"x") == 1
    await executor.delete(long_name)
    with pytest.raises(InvalidPath):
        await executor.write("n" * 300, b"x")
    with pytest.raises(InvalidPath):
        await executor.read_bytes(("é" * 127 + "/") * 31 + "f")
    with pytest.raises(InvalidPath, match="levels"):
        await executor.write("d/" * 1200 + "f", b"x")
    assert await executor.write("d/" * 200 + "f", b"x") == 1
    await executor.delete("d", recursive=True)
