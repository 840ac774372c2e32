"""Neighbour isolation settings reach the engine: block-I/O weight and the cells' cpuset."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from agentcell.config import CellLimits
from agentcell.sandbox.docker.backend import cell_cpuset
from tests.conftest import ManagerFactory


def engine_takes_blkio_weight() -> bool:
    """Docker's own test: cgroup v1 needs blkio.weight (absent when only BFQ's file exists, as
    on blk-mq kernels); cgroup v2 needs the io controller."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists():
        return "io" in v2.read_text().split()
    return Path("/sys/fs/cgroup/blkio/blkio.weight").exists()


def test_auto_cpuset_leaves_core_0_only_on_big_hosts() -> None:
    assert cell_cpuset("auto", 2) == ""
    assert cell_cpuset("auto", 3) == ""
    assert cell_cpuset("auto", 4) == "1-3"
    assert cell_cpuset("auto", 16) == "1-15"
    assert cell_cpuset("auto", 0) == ""
    assert cell_cpuset("0,2-3", 16) == "0,2-3"
    assert cell_cpuset("", 16) == ""


def test_cpuset_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="cpuset"):
        CellLimits(cpuset="core zero")
    with pytest.raises(ValueError, match="blkio_weight"):
        CellLimits(blkio_weight=5)


@pytest.mark.docker
async def test_cell_host_config_carries_blkio_weight_and_cpuset(
    make_manager: ManagerFactory, docker_client: docker.DockerClient
) -> None:
    async with make_manager(limits={"blkio_weight": 300, "cpuset": "0"}) as manager:
        cell = await manager.ensure("alice")
        assert (await cell.exec("import os; print(sorted(os.sched_getaffinity(0)))")).stdout == (
            "[0]\n"
        )
        host = docker_client.api.inspect_container(cell.container_id)["HostConfig"]
    assert host["CpusetCpus"] == "0"
    # Where the kernel lacks the file Docker writes, the engine discards the weight with a warning.
    assert host["BlkioWeight"] == (300 if engine_takes_blkio_weight() else 0)


@pytest.mark.docker
async def test_default_cell_gets_the_default_weight_and_no_pin_on_small_hosts(
    make_manager: ManagerFactory, docker_client: docker.DockerClient
) -> None:
    async with make_manager() as manager:
        cell = await manager.ensure("bob")
        host = docker_client.api.inspect_container(cell.container_id)["HostConfig"]
        ncpu = manager.backend.engine_cpus  # type: ignore[attr-defined]
    assert host["CpusetCpus"] == (f"1-{ncpu - 1}" if ncpu >= 4 else "")
    assert host["BlkioWeight"] == (100 if engine_takes_blkio_weight() else 0)
