"""Hostile code in a real cell: it is contained, and the cell (and its neighbours) keep working.
Every case runs in a runc cell and in a gVisor cell (slow: a private engine with runsc, one per
module); what a gVisor cell fails by a limit of runsc is a strict xfail that names it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from agentcell.errors import (
    CellDied,
    CellOutOfMemory,
    CellStuck,
    DockerUnavailable,
    WorkspaceFull,
)
from agentcell.executor.protocol import Output
from agentcell.sandbox.cell import Cell
from agentcell.sandbox.manager import CellManager
from agentcell.sandbox.uids import FIRST_UID
from tests.conftest import ManagerFactory, SettingsFactory, workspaces
from tests.gvisor import (
    ANOTHER_FORK_BOMB,
    FORK_BOMB_KILLS_THE_SANDBOX,
    IO_URING_IN_THE_SENTRY,
    NO_CPU_QUOTA,
    NO_OCI_SECCOMP,
    SOCKET_STAYS,
    apply_xfails,
)
from tests.memory import Peak, rss
from tests.waiting import until

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=["runc", pytest.param("gvisor", marks=pytest.mark.slow)])
def runtime(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings that put cells on a runtime: runc on the machine's engine, or runsc."""
    if request.param == "runc":
        return {}
    return {"docker_host": request.getfixturevalue("runsc_engine_url"), "runtime": "runsc"}


@pytest.fixture
def make_settings(
    make_settings: SettingsFactory, runtime: dict[str, str], request: pytest.FixtureRequest
) -> SettingsFactory:
    if runtime:
        apply_xfails(request)
    return lambda **overrides: make_settings(**{**runtime, **overrides})


@pytest.mark.gvisor_xfail(
    reason=FORK_BOMB_KILLS_THE_SANDBOX, raises=(CellDied, DockerUnavailable)
)  # DockerUnavailable: runsc stalled on the dying sandbox, and the engine with it
async def test_fork_bomb_is_contained_and_the_cell_still_answers(manager: CellManager) -> None:
    cell = await manager.ensure("mallory")
    bomb = await cell.exec("bomb() { bomb | bomb; }; bomb", language="shell", timeout_s=5)
    assert bomb.timed_out
    assert "Resource temporarily unavailable" in bomb.stderr  # the pids limit held
    assert (await cell.exec("print('alive')", timeout_s=30)).stdout == "alive\n"
    forks = await cell.exec("for i in $(seq 20); do /bin/true; done; echo ok", language="shell")
    assert forks.stdout == "ok\n"


# Prints every process in the cell but PID 1 (tini), the executor and its python kernels (forks
# of it: the same command line), and this code's own process. Zombies count: they hold pids.
OTHERS = """
import os
server = open(f'/proc/{os.getppid()}/cmdline', 'rb').read()
others = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()
    except OSError:
        continue
    if int(pid) not in (1, os.getpid()) and cmd != server:
        others.append(cmd.decode(errors='replace'))
print(others)
"""


async def only_ours(cell: Cell) -> bool:
    """No process but the executor and kernels (the killed are reaped in the background)."""
    return (await cell.exec(OTHERS, timeout_s=30)).stdout == "[]\n"


@pytest.mark.gvisor_xfail(**ANOTHER_FORK_BOMB)
@pytest.mark.parametrize(
    ("code", "language"),
    [
        (":(){ :|:& };:", "shell"),  # returns at once: the bombs are left behind
        ("bomb() { bomb | bomb; }; bomb", "shell"),  # until its timeout
        ("import os\nwhile True: os.fork()", "python"),
    ],
    ids=["shell, returns at once", "shell, until its timeout", "python"],
)
async def test_after_a_fork_bomb_only_the_executor_and_kernels_are_left(
    manager: CellManager, code: str, language: str
) -> None:
    cell = await manager.ensure("mallory")
    container = cell.container_id
    with contextlib.suppress(CellOutOfMemory):  # python's forks may fill memory before pids
        await cell.exec(code, language=language, timeout_s=5)  # type: ignore[arg-type]
    assert (await cell.exec("echo alive", language="shell")).stdout == "alive\n"
    assert cell.container_id == container, "the cell died of the bomb (and was recreated)"
    await until("only the executor and its kernels are left", lambda: only_ours(cell))


@pytest.mark.gvisor_xfail(**ANOTHER_FORK_BOMB)
async def test_a_cell_at_its_pids_limit_says_so_and_recovers(manager: CellManager) -> None:
    cell = await manager.ensure("mallory")
    await cell.exec("echo kept > /workspace/kept.txt", language="shell")
    # Kept on purpose: background processes are not the executor's to kill.
    await cell.exec(":(){ :|:& };:", language="shell", background=True)

    async def until_stuck() -> None:
        for _ in range(200):  # until the bomb fills the pids limit
            await cell.exec("true", language="shell", timeout_s=10)

    with pytest.raises(CellStuck) as stuck:
        await until_stuck()
    assert "process limit (256 processes)" in stuck.value.message
    assert "the cell was restarted" in stuck.value.message
    assert (await cell.exec("cat /workspace/kept.txt", language="shell")).stdout == "kept\n"
    await until("only the executor and its kernels are left", lambda: only_ours(cell))


@pytest.mark.gvisor_xfail(reason=NO_CPU_QUOTA, raises=AssertionError)
async def test_thread_counts_follow_the_cells_cpus(make_manager: ManagerFactory) -> None:
    async with make_manager(limits={"cpus": 1}) as manager:
        cell = await manager.ensure("numpy")
        env = await cell.exec(
            "import os\nprint(os.environ['OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'])"
        )
        assert env.stdout == "1 1\n"
        shell = await cell.exec("echo $MKL_NUM_THREADS $NUMEXPR_NUM_THREADS", language="shell")
        assert shell.stdout == "1 1\n"


async def test_orphans_are_reaped_so_zombies_never_pile_up(manager: CellManager) -> None:
    cell = await manager.ensure("zoe")
    await cell.exec("for i in $(seq 100); do (sleep 0.01 &); done", language="shell")
    await asyncio.sleep(0.5)
    states = await cell.exec("ps -eo stat= | grep -c '^Z' || true", language="shell")
    assert states.stdout.strip() == "0"


async def test_writing_outside_workspace_and_tmp_fails(manager: CellManager) -> None:
    cell = await manager.ensure("mallory")
    for target in ("/etc/evil", "/evil", "/opt/agentcell/executor/evil.py", "/usr/bin/evil"):
        r = await cell.exec(f"echo x > {target}", language="shell")
        assert r.exit_code != 0, target
        assert "Read-only file system" in r.stderr or "Permission denied" in r.stderr
    ok = await cell.exec(
        "echo x > /workspace/ok && echo y > /tmp/ok && echo fine", language="shell"
    )
    assert ok.stdout == "fine\n"


@pytest.mark.gvisor_xfail(reason=NO_OCI_SECCOMP, raises=KeyError)
async def test_not_root_no_capabilities_no_new_privileges_seccomp(manager: CellManager) -> None:
    cell = await manager.ensure("mallory")
    r = await cell.exec(
        "id -u; grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status",
        language="shell",
    )
    lines = r.stdout.split("\n")
    assert int(lines[0]) >= FIRST_UID  # a uid of its own, no host account's
    status = dict(line.split(":\t") for line in lines[1:] if line)
    assert status["CapEff"] == status["CapBnd"] == status["CapPrm"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode


@pytest.mark.gvisor_xfail(reason=IO_URING_IN_THE_SENTRY, raises=AssertionError)
async def test_io_uring_is_denied(manager: CellManager) -> None:
    cell = await manager.ensure("mallory")
    code = (
        "import ctypes, os, platform\n"
        "nr = 425  # io_uring_setup on x86_64 and aarch64\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "params = ctypes.create_string_buffer(120)\n"
        "rc = libc.syscall(nr, 8, params)\n"
        "print(rc, ctypes.get_errno())"
    )
    rc, errno = (await cell.exec(code)).stdout.split()
    assert rc == "-1"
    assert int(errno) == 1  # EPERM from our profile


async def test_no_network(manager: CellManager) -> None:
    cell = await manager.ensure("mallory")
    r = await cell.exec(
        "import os, socket\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('blocked', exc.errno)"
    )
    nets, verdict = r.stdout.splitlines()
    assert nets == "['lo']"
    assert verdict.startswith("blocked")


@pytest.mark.gvisor_xfail(reason=SOCKET_STAYS, raises=pytest.fail.Exception)
async def test_symlinks_planted_by_the_cell_are_never_followed_by_the_host(
    manager: CellManager,
) -> None:
    cell = await manager.ensure("mallory")
    secret = Path(manager.settings.data_dir) / "host-secret.txt"
    secret.write_text("host only")
    await cell.exec(
        f"ln -s {secret} /workspace/leak && ln -s /etc/passwd /workspace/pw", language="shell"
    )
    for name in ("leak", "pw"):
        with pytest.raises(Exception, match="leaves the workspace") as info:
            await cell.files.read_bytes(name)
        assert "host only" not in str(info.value)
    # A cell that swaps its control socket for a link to a host socket: we refuse to follow it.
    await cell.exec(
        "import os\n"
        "os.unlink('/run/agentcell/exec.sock')\n"
        "os.symlink('/var/run/docker.sock', '/run/agentcell/exec.sock')"
    )
    with pytest.raises(CellDied):
        await cell.exec("print(1)")
    assert (await cell.exec("print('recovered')")).stdout == "recovered\n"


async def test_full_workspace_is_enospc_inside_and_a_clear_error_outside(
    manager: CellManager,
) -> None:
    if not manager.backend.features.storage_quota:
        pytest.fail("workspace quotas need root and mkfs.ext4: run scripts/setup as root")
    cell = await manager.ensure("mallory")
    quota = manager.settings.limits.workspace_mb
    fill = await cell.exec(
        f"dd if=/dev/zero of=/workspace/big bs=1M count={quota * 2}", language="shell", timeout_s=60
    )
    assert fill.exit_code != 0
    assert "No space left on device" in fill.stderr
    with pytest.raises(WorkspaceFull):
        await cell.files.write("more.bin", b"x" * (4 * 2**20))
    image = workspaces(manager).root / f"{cell.cell_id}.img"
    assert image.stat().st_blocks * 512 <= (quota + 1) * 2**20
    await cell.files.delete("big")
    await cell.files.write("more.bin", b"x" * (4 * 2**20))


async def test_tmp_and_shm_are_capped(manager: CellManager) -> None:
    cell = await manager.ensure("mallory")
    lim = manager.settings.limits
    for path, cap in (("/tmp/fill", lim.tmp_mb), ("/dev/shm/fill", lim.shm_mb)):
        r = await cell.exec(f"dd if=/dev/zero of={path} bs=1M count={cap + 8}", language="shell")
        assert "No space left on device" in r.stderr, path
        await cell.exec(f"rm -f {path}", language="shell")


async def test_neighbour_keeps_answering_while_one_cell_burns_cpu(manager: CellManager) -> None:
    mallory, bob = await asyncio.gather(manager.ensure("mallory"), manager.ensure("bob"))
    burn = asyncio.create_task(
        mallory.exec(
            "import multiprocessing as mp\n"
            "def spin():\n    while True: pass\n"
            "ps = [mp.Process(target=spin) for _ in range(4)]\n"
            "[p.start() for p in ps]\n[p.join() for p in ps]",
            timeout_s=8,
        )
    )
    await asyncio.sleep(1)
    for i in range(20):
        assert (await bob.exec(f"print({i})", timeout_s=5)).stdout == f"{i}\n"
    result = await burn
    assert result.timed_out


async def test_background_process_does_not_block_the_next_exec(manager: CellManager) -> None:
    cell = await manager.ensure("bob")
    r = await cell.exec("sleep 300 & echo started", language="shell", timeout_s=10)
    assert (r.stdout, r.timed_out) == ("started\n", False)
    r = await cell.exec(
        "import subprocess; subprocess.Popen(['sleep', '300']); print('py')", timeout_s=10
    )
    assert (r.stdout, r.timed_out) == ("py\n", False)
    assert (await cell.exec("echo next", language="shell", timeout_s=10)).stdout == "next\n"


async def test_ten_megabytes_of_stdout_stream_without_host_memory_growth(
    manager: CellManager,
) -> None:
    cell = await manager.ensure("bob")
    before = rss()  # now, not the lifetime peak: an earlier test's peak must not hide ours
    received = 0
    code = "import sys\nfor _ in range(160): sys.stdout.write('x' * 65535 + '\\n')"
    with Peak() as peak:
        async for event in cell.stream(code, timeout_s=60):
            if isinstance(event, Output):
                received += len(event.data)
    assert received == 160 * 65536
    assert peak.value - before < 48 * 2**20
    capped = await cell.exec(code, output_limit=1024 * 1024, timeout_s=60)
    assert capped.truncated
    assert len(capped.stdout.encode()) <= 1024 * 1024


async def test_oom_in_one_cell_leaves_the_neighbour_alone(make_manager: ManagerFactory) -> None:
    async with make_manager() as manager:
        a, b = await asyncio.gather(manager.ensure("a"), manager.ensure("b"))
        await b.exec("kept = 'b'")
        with pytest.raises(CellDied):
            await a.exec("x = bytearray(1024 * 2**20)")
        assert (await b.exec("print(kept)")).stdout == "b\n"
