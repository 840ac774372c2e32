"""The reaper: idle tiers never reach work in flight, the pause tier only where the backend can
pause, and a failed round never stops the rounds after it."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from agentcell.executor.protocol import Exit, Output
from agentcell.sandbox.base import BackendFeatures, CellState, ContainerInfo
from agentcell.sandbox.docker.backend import DockerBackend
from agentcell.sandbox.manager import CellManager
from tests.conftest import ManagerFactory, SettingsFactory
from tests.waiting import until

pytestmark = pytest.mark.docker


class NoPause(DockerBackend):
    """The Docker backend, saying it cannot pause (as a backend without the feature would)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.features = BackendFeatures(supports_pause=False, storage_quota=False)


class FailingList(DockerBackend):
    """The Docker backend with an injected fault: ``list`` raises, ``failures`` times, an
    exception that is not agentcell's (a bug, say), as nothing in the real engine will."""

    failures = 0

    def list(self) -> list[ContainerInfo]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("injected fault")
        return super().list()


async def test_a_call_starting_while_the_reaper_waits_for_the_lock_is_not_paused(
    manager: CellManager,
) -> None:
    cell = await manager.ensure("alice")
    lock = manager.roster.locks["alice"]
    await lock.acquire()  # as a restart or a wake of alice's cell would hold it
    try:
        later = time.time() + manager.settings.idle_pause_s + 1
        reap = asyncio.create_task(manager.reap(now=later))
        # The reaper looked (idle, nothing running) and now waits for alice's lock.
        await until("the reaper waits for the lock", lambda: bool(lock._waiters))
        stream = cell.stream("import time\nprint('go', flush=True)\ntime.sleep(1)\nprint('done')")
        first = await anext(stream)  # the code runs: the cell is busy
        assert isinstance(first, Output)
    finally:
        lock.release()
    report = await reap
    assert report.paused == 0
    assert cell.state is CellState.RUNNING
    rest = [e async for e in stream]
    assert "".join(e.data for e in rest if isinstance(e, Output)) == "done\n"
    assert isinstance(rest[-1], Exit)


async def test_the_pause_tier_is_skipped_where_the_backend_cannot_pause(
    make_manager: ManagerFactory, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    settings = make_settings()
    async with make_manager(settings, backend=NoPause(settings)) as manager:
        cell = await manager.ensure("bob")
        s = manager.settings
        report = await manager.reap(now=time.time() + s.idle_pause_s + 1)
        assert report.paused == 0
        assert docker_client.containers.get(cell.container_id).status == "running"
        report = await manager.reap(now=time.time() + s.idle_stop_s + 1)
        assert report.stopped == 1
        assert (await cell.exec("print('back')")).stdout == "back\n"


async def test_the_reaper_survives_any_exception_and_counts_it(
    make_manager: ManagerFactory, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    settings = make_settings(reap_interval_s=0.05)
    backend = FailingList(settings)
    async with make_manager(settings, backend) as manager:
        cell = await manager.ensure("carol")
        backend.failures = 2
        await until("two rounds failed", lambda: manager.reaper.errors == 2)
        docker_client.containers.get(cell.container_id).kill()
        await until("a later round notices the death", lambda: cell.state is CellState.DEAD)
        assert manager.reaper.errors == 2
