"""The caller's own cell (its state, restart, removal, the processes its background execs
kept), the admin's view of every cell, and how the other use cases reach a cell: each call
counts as running in the owner's cell while it lasts (``Running``: a cap per user)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

from agentcell.config import CellLimits
from agentcell.errors import AgentcellError
from agentcell.executor.protocol import Process
from agentcell.sandbox.base import CellState
from agentcell.sandbox.service import CellCounters, CellHandle, CellService, ReapReport
from agentcell.sandbox.service import CellStatus as CellRecord
from agentcell.services.audit import Audit
from agentcell.services.limits import Limits
from agentcell.store import Store

T = TypeVar("T")


@dataclass(frozen=True)
class CellStatus:
    state: str  # a CellState's value, or "none" while the owner has no cell
    image: str
    limits: CellLimits
    network: str  # the mode of the owner's egress policy
    created_at: datetime | None
    last_active_at: datetime | None
    memory_bytes: int | None = None  # in use now (running), without page cache
    workspace_bytes: int | None = None  # what the workspace's volume holds (quota'd)


@dataclass(frozen=True)
class Health:
    docker: bool
    database: bool
    workspace_quota: bool  # workspaces have a size limit the kernel enforces

    @property
    def ok(self) -> bool:
        return self.docker and self.database


class CellStream(Generic[T]):
    """What a call in the owner's cell sends back as it comes (``items``). The call counts as
    running in the cell until ``close()``, which also stops it if it still runs: call it
    however the stream ends, read to its end or not even started."""

    def __init__(self, release: Callable[[], None]) -> None:
        self.items: AsyncGenerator[T, None] = _nothing()
        self._source: AsyncGenerator[T, None] | None = None
        self._release: Callable[[], None] | None = release

    async def close(self) -> None:
        release, self._release = self._release, None
        if release is None:
            return
        try:
            if self._source is not None:
                await self._source.aclose()
        finally:
            release()


async def _nothing() -> AsyncGenerator[T, None]:
    return
    yield


async def _prefetched(source: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """Start the stream now, so that its errors (not found, not a file) come before any
    answer does: as a proper 4xx, not a broken 200."""
    try:
        first = await anext(source)
    except StopAsyncIteration:
        return _nothing()

    async def rest() -> AsyncGenerator[T, None]:
        yield first
        async for item in source:
            yield item

    return rest()


def _time(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None


class Cells:
    def __init__(
        self,
        cells: CellService,
        store: Store,
        limits: Limits,
        audit: Audit,
        network_mode: Callable[[str], Awaitable[str]],
    ) -> None:
        self.service, self._store, self._limits, self._audit = cells, store, limits, audit
        self._network_mode = network_mode
        self._probe: asyncio.Future[Health] | None = None

    @contextlib.asynccontextmanager
    async def using(self, owner: str) -> AsyncIterator[CellHandle]:
        """The owner's cell, running and held busy, for one call that counts as running in it."""
        with self._limits.running.hold(owner):
            async with self.service.using(owner):
                yield CellHandle(self.service, owner)

    async def stream(
        self,
        owner: str,
        open_stream: Callable[[CellHandle], AsyncGenerator[T, None]],
        *,
        prefetch: bool = False,
    ) -> CellStream[T]:
        """``open_stream`` on the owner's cell, counted as running until the stream is closed.
        With ``prefetch`` its first item is fetched now, so that its errors are raised here."""
        running = self._limits.running
        running.acquire(owner)
        stream = CellStream[T](lambda: running.release(owner))
        try:
            stream._source = source = open_stream(CellHandle(self.service, owner))
            stream.items = await _prefetched(source) if prefetch else source
        except BaseException:
            await stream.close()
            raise
        return stream

    async def status(self, owner: str) -> CellStatus:
        cell = await self.service.status(owner, usage=True)
        profile = await self.service.profile()
        return CellStatus(
            state=cell.state.value if cell else "none",
            image=profile.image,
            limits=profile.limits,
            network=await self._network_mode(owner),
            created_at=_time(cell.created_at) if cell else None,
            last_active_at=_time(cell.last_active_at) if cell else None,
            memory_bytes=cell.memory_bytes if cell else None,
            workspace_bytes=cell.storage_bytes if cell else None,
        )

    async def restart(self, owner: str) -> CellStatus:
        """A new container for the owner (python variables and processes go, files stay)."""
        self._limits.lifecycle.take(owner)
        await self.service.restart(owner)
        await self._audit.record(owner, "cell.restart")
        return await self.status(owner)

    async def remove(self, owner: str) -> None:
        """Remove the owner's container; the workspace is kept."""
        self._limits.lifecycle.take(owner)
        await self.service.remove(owner)
        await self._audit.record(owner, "cell.delete")

    async def processes(self, owner: str) -> list[Process]:
        """The processes the owner's background execs kept running."""
        return await self.service.processes(owner)

    async def kill_process(self, owner: str, pid: int) -> None:
        """Kill a process a background exec kept, and everything it started."""
        await self.service.kill_process(owner, pid)
        await self._audit.record(owner, "process.kill", target=str(pid))

    async def every_cell(self) -> list[CellRecord]:
        """Every cell of this server's, the warm pool's too (``owner`` empty): the admin's."""
        return await self.service.overview()

    async def counters(self) -> CellCounters:
        return await self.service.counters()

    async def reap(self) -> ReapReport:
        """Apply the idle tiers now (the reaper also does every ``reap_interval_s``)."""
        return await self.service.reap()

    async def put_down(self, owner: str, tier: Literal["pause", "stop", "remove"]) -> CellState:
        """The admin pauses, stops or removes an idle cell (its workspace kept)."""
        state = await self.service.put_down(owner, tier)
        await self._audit.record(owner, "cell.admin", detail=tier)
        return state

    async def health(self) -> Health:
        """Whether the engine and the database answer. Anyone may ask (``/healthz``), so calls
        at the same time share one probe: a flood of them costs one engine ping."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._probe)

    async def _check(self) -> Health:
        cells = await self.service.health()
        database_ok = False
        with contextlib.suppress(AgentcellError):
            await self._store.ping()
            database_ok = True
        return Health(cells.backend, database_ok, cells.storage_quota)
