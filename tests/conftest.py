"""Shared fixtures: a real Docker engine, the sandbox image built from this checkout once per
session, and cell managers on fresh data dirs whose containers are labelled and swept."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic_ai import models

from agentcell.api.app import create_app
from agentcell.api.auth import ensure_admin_token
from agentcell.client import Client
from agentcell.config import CellLimits, Settings
from agentcell.sandbox.base import Backend
from agentcell.sandbox.cell import Cell
from agentcell.sandbox.docker.backend import LABEL_INSTANCE, DockerBackend
from agentcell.sandbox.docker.images import ensure_image
from agentcell.sandbox.docker.workspaces import Workspaces
from agentcell.sandbox.manager import CellManager
from tests import postgres
from tests.gvisor import runsc_engine_url
from tests.scripted import Scripted, echo

__all__ = ["runsc_engine_url"]  # a fixture of the gVisor cases (tests/gvisor.py)
RUN_ID = secrets.token_hex(4)
TEST_LABEL = "agentcell.test"
_instances = itertools.count()


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own AGENTCELL_* (say AGENTCELL_NETWORK or AGENTCELL_MODEL) must not leak
    into the Settings that tests build; tests that want one set it themselves."""
    for name in [n for n in os.environ if n.startswith("AGENTCELL_")]:
        monkeypatch.delenv(name)


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
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """A real PostgreSQL server for the whole test session (``tests.postgres``)."""
    with postgres.serve() as server:
        yield server


@pytest.fixture(scope="session")
def minimal_image(docker_client: docker.DockerClient) -> str:
    return ensure_image(docker_client, "minimal", lambda _event: None)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, minimal_image: str) -> SettingsFactory:
    """Settings on a fresh data dir, small limits, no pool unless asked."""

    def make(**overrides: object) -> Settings:
        limits = CellLimits(**{"memory_mb": 256, "workspace_mb": 64, **overrides.pop("limits", {})})  # type: ignore[arg-type, dict-item]
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
    backend = manager.backend
    for info in await asyncio.to_thread(backend.list):
        await asyncio.to_thread(backend.remove, info.container_id)
    for cell_id in backend.storage_ids():
        await asyncio.to_thread(backend.delete_storage, cell_id)


def workspaces(manager: CellManager) -> Workspaces:
    """The Docker backend's workspaces, for tests of what a cell leaves on this host."""
    assert isinstance(manager.backend, DockerBackend)
    return manager.backend.workspaces


def workspace_dir(manager: CellManager, cell: Cell) -> Path:
    """Where the cell's workspace is mounted on this host."""
    return workspaces(manager).path(cell.cell_id)


@pytest.fixture
async def make_manager(make_settings: SettingsFactory) -> AsyncIterator[ManagerFactory]:
    """Start managers; at the end, destroy everything they made."""
    started: list[CellManager] = []

    @contextlib.asynccontextmanager
    async def make(
        settings: Settings | None = None, backend: Backend | None = None, **overrides: object
    ) -> AsyncIterator[CellManager]:
        manager = CellManager(settings or make_settings(**overrides), backend)
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


START_TIMEOUT_S = 60.0


@dataclass
class Live:
    url: str
    admin_token: str
    settings: Settings
    app: FastAPI | None = None  # served in this process: tests may reach app.state

    def admin(self) -> Client:
        return Client(self.url, api_key="", admin_token=self.admin_token)


def sweep_server(docker_client: docker.DockerClient, settings: Settings) -> None:
    """Remove this server's containers and workspaces (they outlive the server by design)."""
    label = {"label": f"{LABEL_INSTANCE}={settings.instance}"}
    for container in docker_client.containers.list(all=True, filters=label):
        container.remove(force=True)
    workspaces = Workspaces(settings.data_dir / "workspaces", settings.limits.workspace_mb)
    for ws_id in workspaces.ids():
        workspaces.delete(ws_id)


AppHook = Callable[[FastAPI], None]
ServerFactory = Callable[..., "contextlib.AbstractContextManager[Live]"]


@pytest.fixture
def make_server(
    make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> Iterator[ServerFactory]:
    """Start live servers: ``with make_server(settings=None, customize=None) as live``.

    ``customize(app)`` runs on the app before it serves (e.g. to set
    ``app.state.model_factory``). A server stops when its block ends; starting another on the
    same settings reuses the data dir, as a restart does. Cells and workspaces are swept at the
    end of the test.
    """
    started: dict[str, Settings] = {}

    @contextlib.contextmanager
    def start(settings: Settings | None = None, customize: AppHook | None = None) -> Iterator[Live]:
        settings = settings or make_settings(max_upload_bytes=2 * 2**20)
        started[settings.instance] = settings
        token, _ = ensure_admin_token(settings)
        app = create_app(settings)
        if customize is not None:
            customize(app)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        uv = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not uv.started:
                if not thread.is_alive():
                    pytest.fail("the server exited while starting; see the log above")
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not start within {START_TIMEOUT_S} s")
                time.sleep(0.02)
            yield Live(f"http://127.0.0.1:{port}", token, settings, app)
        finally:
            uv.should_exit = True
            thread.join(timeout=60)
            sock.close()

    yield start
    for settings in started.values():
        sweep_server(docker_client, settings)


@pytest.fixture
def server(make_server: ServerFactory) -> Iterator[Live]:
    with make_server() as live:
        yield live


@pytest.fixture
def scripted() -> Scripted:
    """The scripted model of ``chat_server``: it echoes, until a test gives it a script."""
    return Scripted(echo)


@pytest.fixture
def chat_server(make_server: ServerFactory, scripted: Scripted) -> Iterator[Live]:
    """A live server whose chat turns use ``scripted``; real model requests are refused."""
    with (
        models.override_allow_model_requests(False),
        make_server(customize=scripted.install) as live,
    ):
        yield live
