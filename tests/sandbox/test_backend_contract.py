"""What every ``Backend`` promises (``agentcell.sandbox.base``), as cases parametrized by
backend, as the executor's cases are: a backend is a fixture ``<name>_backend`` that yields a
started ``Backend`` on fresh storage and removes what it made at the end. One backend today."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from agentcell.config import CellLimits
from agentcell.errors import AgentcellError, ExecutorUnreachable, ImageMissing
from agentcell.executor.protocol import Exec
from agentcell.sandbox.base import Backend, CellSpec, CellState
from agentcell.sandbox.docker.backend import DockerBackend
from tests.conftest import RUN_ID, TEST_LABEL, SettingsFactory
from tests.waiting import until

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker)]
LIMITS = CellLimits(memory_mb=128, workspace_mb=32)
UID = 1000


def sweep(backend: Backend) -> None:
    for info in backend.list():
        backend.remove(info.container_id)
    for cell_id in backend.storage_ids():
        backend.delete_storage(cell_id)


@pytest.fixture
def docker_backend(make_settings: SettingsFactory) -> Iterator[Backend]:
    backend = DockerBackend(make_settings(limits={"workspace_mb": LIMITS.workspace_mb}))
    backend.ping()
    try:
        yield backend
    finally:
        sweep(backend)
        backend.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.getfixturevalue(f"{request.param}_backend")
    return found


def spec_for(backend: Backend, image: str = "", owner: str = "") -> CellSpec:
    return CellSpec(
        cell_id=secrets.token_hex(8),
        owner=owner,
        image=image or backend.prepare_image(),
        limits=LIMITS,
        labels={TEST_LABEL: RUN_ID},
        uid=UID,
    )


async def started(backend: Backend, spec: CellSpec) -> str:
    """A container for spec, created, its storage attached, started and answering. (Backend
    calls block: off the event loop, as the manager makes them.)"""
    info = await asyncio.to_thread(backend.create, spec)
    await asyncio.to_thread(backend.attach_storage, spec.cell_id, spec.uid)
    await asyncio.to_thread(backend.start, info.container_id)
    await answering(backend, spec.cell_id)
    return info.container_id


async def answering(backend: Backend, cell_id: str) -> None:
    async def pings() -> bool:
        try:
            await backend.channel(cell_id).ping()
        except ExecutorUnreachable:
            return False
        return True

    await until(f"the executor of cell {cell_id} answers", pings)


async def run(backend: Backend, cell_id: str, code: str) -> str:
    result = await backend.channel(cell_id).exec(Exec(code=code, timeout_s=30, output_limit=2**16))
    assert result.exit_code == 0, result.stderr
    return result.stdout


async def test_create_reports_a_stopped_container_of_the_cell(backend: Backend) -> None:
    spec = spec_for(backend, owner="alice")
    info = backend.create(spec)
    assert info.cell_id == spec.cell_id
    assert info.owner == "alice"
    assert info.state is CellState.STOPPED
    assert info.image == spec.image
    assert info.uid == UID
    assert info.labels[TEST_LABEL] == RUN_ID  # extra labels are kept
    assert backend.inspect(info.container_id) == info
    assert info.container_id in {i.container_id for i in backend.list()}


async def test_a_started_cell_answers_on_its_channel_and_has_no_network(backend: Backend) -> None:
    spec = spec_for(backend)
    container_id = await started(backend, spec)
    info = backend.inspect(container_id)
    assert info is not None
    assert info.state is CellState.RUNNING
    backend.start(container_id)  # starting a running container is no error
    interfaces = await run(backend, spec.cell_id, "import socket; print(socket.if_nameindex())")
    assert "'lo'" in interfaces
    assert interfaces.count("(") == 1  # policy none: loopback only
    memory = backend.memory_bytes(container_id)
    assert memory is None or memory > 0


async def test_the_channel_of_a_cell_that_does_not_run_is_unreachable(backend: Backend) -> None:
    spec = spec_for(backend)
    backend.create(spec)
    backend.attach_storage(spec.cell_id, spec.uid)
    with pytest.raises(ExecutorUnreachable):
        await backend.channel(spec.cell_id).ping()


async def test_storage_is_idempotent_and_outlives_containers(backend: Backend) -> None:
    spec = spec_for(backend)
    backend.attach_storage(spec.cell_id, spec.uid)
    container_id = await started(backend, spec)  # attaches again: no error
    assert spec.cell_id in backend.storage_ids()
    assert backend.has_storage(spec.cell_id)
    await backend.channel(spec.cell_id).write("kept.txt", b"kept")
    backend.remove(container_id)
    backend.remove(container_id)  # gone already: no error
    assert backend.inspect(container_id) is None
    backend.detach_storage(spec.cell_id)
    backend.detach_storage(spec.cell_id)
    assert backend.has_storage(spec.cell_id)
    again = await started(backend, spec)  # a new container, the same storage
    assert again != container_id
    assert await backend.channel(spec.cell_id).read_bytes("kept.txt") == b"kept"
    backend.remove(again)
    backend.delete_storage(spec.cell_id)
    backend.delete_storage(spec.cell_id)  # nothing there: no error
    assert not backend.has_storage(spec.cell_id)
    assert spec.cell_id not in backend.storage_ids()


async def test_stop_keeps_the_container_for_start(backend: Backend) -> None:
    spec = spec_for(backend)
    container_id = await started(backend, spec)
    backend.stop(container_id)
    backend.stop(container_id)  # stopped already: no error
    info = backend.inspect(container_id)
    assert info is not None
    assert info.state is CellState.STOPPED
    backend.attach_storage(spec.cell_id, spec.uid)
    backend.start(container_id)
    await answering(backend, spec.cell_id)


async def test_pause_keeps_memory_where_supported(backend: Backend) -> None:
    spec = spec_for(backend)
    container_id = await started(backend, spec)
    channel = backend.channel(spec.cell_id)
    await channel.exec(Exec(code="kept = 42", timeout_s=30))
    if not backend.features.supports_pause:
        with pytest.raises(AgentcellError):
            backend.pause(container_id)
        return
    backend.pause(container_id)
    info = backend.inspect(container_id)
    assert info is not None
    assert info.state is CellState.PAUSED
    backend.unpause(container_id)
    assert await run(backend, spec.cell_id, "print(kept)") == "42\n"


async def test_unknown_containers_are_none_and_errors_are_ours(backend: Backend) -> None:
    missing = "0" * 64
    assert backend.inspect(missing) is None
    assert backend.memory_bytes(missing) is None
    backend.remove(missing)  # idempotent
    with pytest.raises(AgentcellError):  # never the engine client's own exception
        backend.start(missing)
    with pytest.raises(ImageMissing):
        backend.create(spec_for(backend, image=f"agentcell-missing:{RUN_ID}"))


async def test_calls_for_different_cells_may_run_at_once(backend: Backend) -> None:
    image = backend.prepare_image()
    specs = [spec_for(backend, image) for _ in range(3)]
    ids = await asyncio.gather(*(started(backend, s) for s in specs))
    assert len(set(ids)) == 3
    infos = await asyncio.gather(*(asyncio.to_thread(backend.inspect, i) for i in ids))
    assert all(i is not None and i.state is CellState.RUNNING for i in infos)
