"""The cell manager against a real Docker engine: one cell per user, tiers, pool, restarts."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from agentcell.errors import CellDied, CellOutOfMemory
from agentcell.executor.protocol import Exit, Output
from agentcell.sandbox.base import CellState
from agentcell.sandbox.manager import CellManager
from tests.conftest import ManagerFactory, destroy, label_filter
from tests.waiting import until

pytestmark = pytest.mark.docker


def containers(client: docker.DockerClient, manager: CellManager) -> list[str]:
    return [c.id for c in client.containers.list(all=True, filters=label_filter(manager))]


async def test_quickstart_shape(manager: CellManager) -> None:
    cell = await manager.ensure("alice")
    await cell.exec("x = 41", language="python")
    assert (await cell.exec("print(x + 1)", language="python")).stdout == "42\n"
    events = [e async for e in cell.stream("for i in range(3): print(i)", language="python")]
    assert "".join(e.data for e in events if isinstance(e, Output)) == "0\n1\n2\n"
    assert isinstance(events[-1], Exit)
    assert events[-1].exit_code == 0
    listing = await cell.exec("ls -la /workspace", language="shell")
    assert listing.exit_code == 0
    assert "total" in listing.stdout


async def test_one_cell_per_user_under_concurrent_first_requests(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cells = await asyncio.gather(*(manager.ensure("alice") for _ in range(12)))
    assert len({c.cell_id for c in cells}) == 1
    assert len({c.container_id for c in cells}) == 1
    assert len(containers(docker_client, manager)) == 1


async def test_users_get_separate_cells_and_workspaces(manager: CellManager) -> None:
    alice, bob = await asyncio.gather(manager.ensure("alice"), manager.ensure("bob"))
    assert alice.cell_id != bob.cell_id
    await alice.files.write("secret.txt", b"alice only")
    assert [e.name for e in await bob.files.list(".")] == []
    bob_view = await bob.exec("import os; print(os.listdir('/workspace'))")
    assert bob_view.stdout == "[]\n"


async def test_warm_pool_hands_out_a_fresh_running_cell(
    make_manager: ManagerFactory, docker_client: docker.DockerClient
) -> None:
    async with make_manager(pool_size=1) as manager:
        await until("the pool fills", lambda: manager.pool_size == 1)
        pooled = {c.cell_id for c in manager.cells() if not c.owner}
        assert len(pooled) == 1
        cell = await manager.ensure("carol")
        assert cell.cell_id in pooled
        assert (await cell.exec("import os; print(os.listdir('.'))")).stdout == "[]\n"
        await until("the pool refills in the background", lambda: manager.pool_size == 1)
        assert len(containers(docker_client, manager)) == 2


async def test_lifecycle_tiers_keep_the_workspace(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cell = await manager.ensure("dave")
    await cell.files.write("keep.txt", b"kept")
    await cell.exec("counter = 1")
    s = manager.settings

    report = await manager.reap(now=time.time() + s.idle_pause_s + 1)
    assert report.paused == 1
    assert docker_client.containers.get(cell.container_id).status == "paused"
    assert (await cell.exec("print(counter)")).stdout == "1\n"  # paused keeps memory

    report = await manager.reap(now=time.time() + s.idle_stop_s + 1)
    assert report.stopped == 1
    assert docker_client.containers.get(cell.container_id).status == "exited"
    assert (await cell.files.read_bytes("keep.txt")) == b"kept"
    assert cell.state is CellState.RUNNING

    old_container = cell.container_id
    report = await manager.reap(now=time.time() + s.idle_remove_s + 1)
    assert report.removed == 1
    assert containers(docker_client, manager) == []
    assert (await cell.files.read_bytes("keep.txt")) == b"kept"
    assert cell.container_id != old_container


async def test_running_work_and_open_streams_count_as_activity(manager: CellManager) -> None:
    cell = await manager.ensure("erin")
    stream = cell.stream("import time\nprint('start', flush=True)\ntime.sleep(30)", timeout_s=60)
    first = await anext(stream)
    assert isinstance(first, Output)
    report = await manager.reap(now=time.time() + manager.settings.idle_remove_s + 1)
    assert report.paused == report.stopped == report.removed == 0
    assert cell.state is CellState.RUNNING
    await stream.aclose()  # closing the stream stops the code
    assert (await cell.exec("print('after')")).stdout == "after\n"


async def test_restart_of_our_process_adopts_cells_and_removes_orphans(
    make_manager: ManagerFactory, make_settings: object, docker_client: docker.DockerClient
) -> None:
    settings = make_settings()  # type: ignore[operator]
    async with make_manager(settings) as first:
        cell = await first.ensure("frank")
        await cell.exec("state = 'alive'")
        await cell.files.write("survives.txt", b"yes")
        container_id = cell.container_id
        orphan = docker_client.containers.create(
            first.image,
            labels={
                **settings.labels,
                "agentcell.instance": settings.instance,
                "agentcell.cell": "deadbeef",
            },
        )
    async with make_manager(settings) as second:
        assert orphan.id not in containers(docker_client, second)
        cell = await second.ensure("frank")
        assert cell.container_id == container_id
        assert (await cell.exec("print(state)")).stdout == "alive\n"
        assert await cell.files.read_bytes("survives.txt") == b"yes"


async def test_killed_cell_is_recreated_and_the_caller_told(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cell = await manager.ensure("gina")
    await cell.files.write("data.txt", b"safe")
    docker_client.containers.get(cell.container_id).kill()
    with pytest.raises(CellDied, match="restarted"):
        await cell.exec("print(1)")
    assert (await cell.exec("print(2)")).stdout == "2\n"
    assert await cell.files.read_bytes("data.txt") == b"safe"


async def test_death_noticed_by_the_reaper_is_reported_once(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cell = await manager.ensure("hank")
    docker_client.containers.get(cell.container_id).kill()
    report = await manager.reap()
    assert report.died == 1
    with pytest.raises(CellDied):
        await cell.exec("print(1)")
    assert (await cell.exec("print(1)")).stdout == "1\n"


async def test_memory_bomb_is_a_clear_oom_error_and_the_cell_recovers(
    manager: CellManager,
) -> None:
    cell = await manager.ensure("ivan")
    await cell.exec("before = 1")
    with pytest.raises(CellOutOfMemory, match="out of memory"):
        await cell.exec("blocks = []\nwhile True: blocks.append(bytearray(32 * 2**20))")
    result = await cell.exec("print('before' in globals())")
    assert result.stdout == "False\n"  # the context was reset, and says so above


async def test_limits_are_applied(manager: CellManager, docker_client: docker.DockerClient) -> None:
    cell = await manager.ensure("judy")
    host = docker_client.api.inspect_container(cell.container_id)["HostConfig"]
    lim = manager.settings.limits
    assert host["Memory"] == host["MemorySwap"] == lim.memory_mb * 2**20
    assert host["NanoCpus"] == int(lim.cpus * 1e9)
    assert host["CpuShares"] == lim.cpu_shares
    assert host["PidsLimit"] == lim.pids
    assert host["ShmSize"] == lim.shm_mb * 2**20
    assert not host.get("Ulimits")  # nproc ulimits count a uid across tenants: pids cgroup only
    df = await cell.exec("df -m /tmp /workspace | tail -n 2", language="shell")
    tmp_size, ws_size = (int(line.split()[1]) for line in df.stdout.splitlines())
    assert tmp_size == lim.tmp_mb
    assert ws_size <= lim.workspace_mb


async def test_removing_a_user_keeps_the_workspace_unless_asked(manager: CellManager) -> None:
    cell = await manager.ensure("kate")
    await cell.files.write("k.txt", b"k")
    await manager.remove("kate")
    again = await manager.ensure("kate")
    assert await again.files.read_bytes("k.txt") == b"k"
    await manager.remove("kate", delete_workspace=True)
    assert not manager.backend.has_storage(cell.cell_id)
    fresh = await manager.ensure("kate")
    assert await fresh.files.list(".") == []


async def test_cleanup_helper_leaves_nothing(
    make_manager: ManagerFactory, docker_client: docker.DockerClient
) -> None:
    async with make_manager() as manager:
        await manager.ensure("zed")
        await destroy(manager)
        assert containers(docker_client, manager) == []
        assert manager.backend.storage_ids() == set()


async def test_an_oom_from_files_in_tmp_says_they_count(make_manager: ManagerFactory) -> None:
    async with make_manager(limits={"memory_mb": 128, "tmp_mb": 512}) as manager:
        cell = await manager.ensure("tmpfs")
        with pytest.raises(CellOutOfMemory) as raised:
            await cell.exec("head -c 400M /dev/zero > /tmp/big", language="shell", timeout_s=60)
    assert "/tmp and /dev/shm live in memory" in raised.value.hint
