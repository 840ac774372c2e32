"""Shared fixtures: a real Docker engine, the sandbox image built from this checkout once per
session, and cell managers on fresh data dirs whose containers are labelled and swept."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import docker
import pytest

from agentcell.config import CellLimits, Settings
from agentcell.sandbox.docker.backend import LABEL_INSTANCE
from agentcell.sandbox.docker.images import ensure_image
from agentcell.sandbox.manager import CellManager

RUN_ID = secrets.token_hex(4)
TEST_LABEL = "agentcell.test"
_instances = itertools.count()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine answers ({exc}): run scripts/setup first")
    yield client
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        container.remove(force=True)
    client.close()


@pytest.fixture(scope="session")
def minimal_image(docker_client: docker.DockerClient) -> str:
    return ensure_image(docker_client, "minimal", lambda _event: None)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, minimal_image: str) -> SettingsFactory:
    """Settings on a fresh data dir, small limits, no pool unless asked."""

    def make(**overrides: object) -> Settings:
        limits = CellLimits(memory_mb=256, workspace_mb=64, **overrides.pop("limits", {}))  # type: ignore[arg-type]
        values: dict[str, object] = {
            "data_dir": tmp_path / f"data{next(_instances)}",
            "instance_id": f"test-{RUN_ID}-{next(_instances)}",
            "labels": {TEST_LABEL: RUN_ID},
            "image": minimal_image,
            "pool_size": 0,
            "limits": limits,
            "reap_interval_s": 3600,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


ManagerFactory = Callable[..., "contextlib.AbstractAsyncContextManager[CellManager]"]


async def destroy(manager: CellManager) -> None:
    """Remove every container and workspace of this manager's instance (test cleanup)."""
    for info in await asyncio.to_thread(manager.backend.list):
        await asyncio.to_thread(manager.backend.remove, info.container_id)
    for ws_id in manager.workspaces.ids():
        await asyncio.to_thread(manager.workspaces.delete, ws_id)


@pytest.fixture
async def make_manager(make_settings: SettingsFactory) -> AsyncIterator[ManagerFactory]:
    """Start managers; at the end, destroy everything they made."""
    started: list[CellManager] = []

    @contextlib.asynccontextmanager
    async def make(
        settings: Settings | None = None, **overrides: object
    ) -> AsyncIterator[CellManager]:
        manager = CellManager(settings or make_settings(**overrides))
        started.append(manager)
        async with manager:
            yield manager

    yield make
    for manager in started:
        with contextlib.suppress(Exception):
            await destroy(manager)
        manager.backend.close()


@pytest.fixture
async def manager(make_manager: ManagerFactory) -> AsyncIterator[CellManager]:
    async with make_manager() as m:
        yield m


def label_filter(manager: CellManager) -> dict[str, str]:
    return {"label": f"{LABEL_INSTANCE}={manager.settings.instance}"}
