"""What a cell leaves on the host: its own uid, its mounts, its logs, and its share of memory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import docker
import pytest

from agentcell.errors import HostMemoryFull
from agentcell.sandbox.base import CellState
from agentcell.sandbox.docker.workspaces import WorkspaceError
from agentcell.sandbox.manager import CellManager
from agentcell.sandbox.uids import FIRST_UID, LEGACY_UID, host_account_uses
from tests.conftest import (
    ManagerFactory,
    SettingsFactory,
    label_filter,
    workspace_dir,
    workspaces,
)

pytestmark = pytest.mark.docker

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loop-mounted workspaces need root")


def mounted(path: Path) -> bool:
    with Path("/proc/self/mountinfo").open() as f:
        return str(path) in {line.split()[4] for line in f}


def running(client: docker.DockerClient, manager: CellManager) -> set[str]:
    return {c.id for c in client.containers.list(filters=label_filter(manager))}


async def wait_pool(manager: CellManager, size: int) -> None:
    for _ in range(400):
        if manager.pool_size == size and not manager.roster.starting:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the pool did not reach {size} cells")


# --- item 2: a uid per cell -------------------------------------------------------------------


async def test_each_cell_has_its_own_uid_that_no_host_account_has(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    alice, bob = await asyncio.gather(manager.ensure("alice"), manager.ensure("bob"))
    uids = []
    for cell in (alice, bob):
        probe = "id -u; id -g; echo $USER $LOGNAME; bash -c 'echo bash works'"
        result = await cell.exec(probe, language="shell")
        uid, gid, names, bash = result.stdout.splitlines()
        assert uid == gid
        assert names == "cell cell"
        assert bash == "bash works"
        who = await cell.exec("import getpass, os; print(getpass.getuser(), os.getuid())")
        assert who.stdout == f"cell {uid}\n"
        uids.append(int(uid))
        await cell.files.write("mine.txt", cell.owner.encode())
        if manager.backend.features.storage_quota or os.geteuid() == 0:
            assert (workspace_dir(manager, cell) / "mine.txt").stat().st_uid == int(uid)
        config = docker_client.api.inspect_container(cell.container_id)["Config"]
        assert config["User"] == f"{uid}:{uid}"
    assert uids[0] != uids[1]
    assert all(uid >= FIRST_UID and not host_account_uses(uid) for uid in uids)


async def test_uids_survive_a_restart_and_old_cells_keep_uid_1000(
    make_manager: ManagerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    async with make_manager(settings) as first:
        alice = await first.ensure("alice")
        gina = await first.ensure("gina")
        alice_uid = (await alice.exec("import os; print(os.getuid())")).stdout
        await gina.files.write("old.txt", b"from before per-cell uids")
        await first.remove("gina")
    # Make gina's cell what an older agentcell left: no uid recorded, files owned by 1000.
    uids_file = settings.data_dir / "uids.json"
    saved = json.loads(uids_file.read_text())
    del saved["cells"][gina.cell_id]
    uids_file.write_text(json.dumps(saved))
    if os.geteuid() == 0:
        path = workspaces(first).ensure(gina.cell_id, LEGACY_UID)
        for item in (path, path / "old.txt"):
            os.chown(item, LEGACY_UID, LEGACY_UID)
        workspaces(first).unmount(gina.cell_id)
    async with make_manager(settings) as second:
        alice = await second.ensure("alice")
        assert (await alice.exec("import os; print(os.getuid())")).stdout == alice_uid
        gina = await second.ensure("gina")
        assert (await gina.exec("import os; print(os.getuid())")).stdout == f"{LEGACY_UID}\n"
        await gina.files.write("new.txt", b"still writable")
        assert await gina.files.read_bytes("old.txt") == b"from before per-cell uids"


# --- item 9: the container log is capped ------------------------------------------------------


async def test_container_log_has_a_size_cap(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cell = await manager.ensure("logan")
    log_config = docker_client.api.inspect_container(cell.container_id)["HostConfig"]["LogConfig"]
    assert log_config == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "1m"}}


# --- items 1 and 16: mounts follow containers -------------------------------------------------


@needs_root
async def test_every_start_path_mounts_the_workspace(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cell = await manager.ensure("mona")
    await cell.files.write("kept.txt", b"kept")
    # Stopped as a reboot does, unmounted as after a reboot: waking must mount it again.
    docker_client.containers.get(cell.container_id).stop(timeout=2)
    workspaces(manager).unmount(cell.cell_id)
    cell.state = CellState.STOPPED
    assert not mounted(workspace_dir(manager, cell))
    assert await cell.files.read_bytes("kept.txt") == b"kept"
    assert mounted(workspace_dir(manager, cell))
    # The same for a recreated container.
    await manager.remove("mona")
    assert not mounted(workspace_dir(manager, cell))
    again = await manager.ensure("mona")
    assert mounted(workspace_dir(manager, again))
    assert await again.files.read_bytes("kept.txt") == b"kept"
    # The idle tier 'stopped' unmounts; the next call mounts again.
    await manager.reap(now=again.last_active_at + manager.settings.idle_stop_s + 1)
    assert again.state is CellState.STOPPED
    assert not mounted(workspace_dir(manager, again))
    assert await again.files.read_bytes("kept.txt") == b"kept"


@needs_root
async def test_a_workspace_that_cannot_be_mounted_never_starts_a_cell(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cell = await manager.ensure("nina")
    await manager.remove("nina")
    image = workspaces(manager).root / f"{cell.cell_id}.img"
    with image.open("r+b") as f:  # wipe the superblock: mount must fail
        f.seek(1024)
        f.write(b"\0" * 4096)
    with pytest.raises(WorkspaceError, match="mount failed"):
        await manager.ensure("nina")
    assert running(docker_client, manager) == set()
    assert (
        list(workspace_dir(manager, cell).iterdir()) == []
    )  # nothing landed under the mount point


@needs_root
async def test_cell_rm_unmounts_and_close_unmounts_all_but_running_cells(
    make_manager: ManagerFactory, docker_client: docker.DockerClient
) -> None:
    async with make_manager(pool_size=1) as manager:
        cells = []
        for owner in ("olga", "pete", "quinn"):
            await wait_pool(manager, 1)
            cells.append(await manager.ensure(owner))
        await wait_pool(manager, 1)
        pooled = next(c for c in manager.cells() if not c.owner)
        active, stopped, removed = cells
        await manager.remove("quinn")  # what `agentcell cell rm` does
        assert not mounted(workspace_dir(manager, removed))
        assert removed.container_id not in running(docker_client, manager)
        docker_client.containers.get(stopped.container_id).stop(timeout=2)
        assert mounted(workspace_dir(manager, stopped))
        assert mounted(workspace_dir(manager, pooled))
    # After close: running cells keep running and mounted; the rest are unmounted, the pool gone.
    assert running(docker_client, manager) == {active.container_id}
    assert mounted(workspace_dir(manager, active))
    assert not mounted(workspace_dir(manager, stopped))
    assert not mounted(workspace_dir(manager, removed))
    assert not manager.backend.has_storage(pooled.cell_id)


@needs_root
async def test_reconcile_unmounts_workspaces_without_a_running_container(
    make_manager: ManagerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    async with make_manager(settings) as first:
        cell = await first.ensure("rita")
        await first.remove("rita")
    workspaces(first).ensure(
        cell.cell_id, first.lifecycle.uids.uid_for(cell.cell_id)
    )  # a stale mount
    assert mounted(workspace_dir(first, cell))
    async with make_manager(settings) as second:
        assert not mounted(workspace_dir(first, cell))
        again = await second.ensure("rita")
        assert mounted(workspace_dir(first, again))


# --- item 10: admission against the host's memory ---------------------------------------------


async def test_admission_makes_room_then_refuses_with_503(
    make_manager: ManagerFactory, docker_client: docker.DockerClient
) -> None:
    # Room for two 256 MiB cells: the pool's cell counts as one.
    async with make_manager(pool_size=1, host_memory_mb=512) as manager:
        await wait_pool(manager, 1)
        alice = await manager.ensure("alice")  # the pooled cell
        await wait_pool(manager, 1)
        bob = await manager.ensure("bob")  # the refilled pool cell
        assert manager.pool_size == 0  # no room to refill
        assert manager.committed_mb() == 512
        # carol needs room: alice is the longest idle, so she is stopped.
        alice.last_active_at -= 100
        carol = await manager.ensure("carol")
        assert alice.state is CellState.STOPPED
        assert bob.state is CellState.RUNNING
        assert carol.state is CellState.RUNNING
        assert running(docker_client, manager) == {bob.container_id, carol.container_id}
        # With every running cell busy, nobody can be stopped: a clear 503.
        busy = "import time; print(1, flush=True); time.sleep(60)"
        streams = [c.stream(busy) for c in (bob, carol)]
        for stream in streams:
            await anext(stream)
        with pytest.raises(HostMemoryFull, match="no memory for another cell") as refused:
            await manager.ensure("alice")
        assert refused.value.status_code == 503
        assert "retry" in refused.value.hint
        assert alice.state is CellState.STOPPED
        for stream in streams:
            await stream.aclose()
        await alice.files.list(".")  # room again: the longest-idle cell makes way
        assert alice.state is CellState.RUNNING
        assert len(running(docker_client, manager)) == 2


def test_the_default_budget_is_memtotal_minus_the_reserve(make_settings: SettingsFactory) -> None:
    manager = CellManager(make_settings(host_memory_reserve_mb=1000))
    total = int(subprocess.run(["free", "-m"], capture_output=True, text=True).stdout.split()[7])
    budget = manager.memory_budget_mb()
    assert budget is not None
    assert abs(budget - (total - 1000)) <= 1
