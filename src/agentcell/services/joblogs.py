"""A job's log and artifacts. The log is kept in the cell (the executor writes it, or the server
for an agent job) and read from any byte offset, whole or followed as it grows; a follower
reads the file, so it never slows the job."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import TypeVar

from agentcell.errors import NotFound, RateLimited
from agentcell.jobs.dispatcher import Dispatcher
from agentcell.jobs.outcome import outcome
from agentcell.sandbox.service import CellService
from agentcell.schemas import ENDED_STATES, JobLogChunk, JobLogEnd
from agentcell.services.files import Download, Files
from agentcell.store import Store
from agentcell.store.models import Job

T = TypeVar("T")
TEXT_MAX = 8 * 1024 * 1024  # of a log in one plain-text answer; X-Log-Offset says where it ends
HEARTBEAT_S = 15.0  # a follower is sent a heartbeat after this long without news
QUEUED_POLL_S = 0.2  # how often a follower of a queued job looks whether it started
SETTLE_S = 5.0  # after the log's end, how long its final state may take to be kept
FOLLOWERS_PER_USER = 32

LogEvent = JobLogChunk | JobLogEnd | None
"""What a follower gets: text, the end, or None (a heartbeat: nothing new)."""


class JobLogs:
    def __init__(
        self, store: Store, cells: CellService, files: Files, dispatcher: Dispatcher
    ) -> None:
        self.store, self._cells, self._files = store, cells, files
        self._dispatcher = dispatcher
        self._followers: dict[str, int] = {}

    async def text(self, owner: str, job_id: str, offset: int) -> tuple[bytes, int]:
        """The log from byte ``offset`` to its end now (at most TEXT_MAX), and the offset after."""
        job = await self.store.get_job(owner, job_id)
        data = bytearray()
        if job.state != "queued":
            with contextlib.suppress(NotFound):  # it never started in the cell
                async with contextlib.aclosing(self._cells.job_log(owner, job.id, offset)) as log:
                    async for chunk in log:
                        data += chunk[: TEXT_MAX - len(data)]
                        if len(data) >= TEXT_MAX:
                            break
        return bytes(data), offset + len(data)

    async def follow(self, owner: str, job_id: str, offset: int) -> AsyncGenerator[LogEvent, None]:
        """The log from ``offset`` as it grows, then ``JobLogEnd``. NotFound comes now."""
        job = await self.store.get_job(owner, job_id)
        if self._followers.get(owner, 0) >= FOLLOWERS_PER_USER:
            raise RateLimited(
                f"you follow {FOLLOWERS_PER_USER} job logs at once already",
                retry_after_s=5.0,
                hint="close a log you follow, then try again",
            )
        return self._follow(job, offset)

    async def _follow(self, job: Job, offset: int) -> AsyncGenerator[LogEvent, None]:
        owner = job.user_id
        self._followers[owner] = self._followers.get(owner, 0) + 1
        try:
            async for beat in self._until_in_cell(job):
                yield beat
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            received = offset
            with contextlib.suppress(NotFound):  # it never started in the cell
                source = self._cells.job_log(owner, job.id, offset, follow=True)
                async for chunk in beating(source, HEARTBEAT_S):
                    if chunk is None:
                        yield None
                        continue
                    received += len(chunk)
                    text = decoder.decode(chunk)
                    if text:
                        pending = len(decoder.getstate()[0])  # a character cut in two
                        yield JobLogChunk(text=text, offset=received - pending)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield JobLogChunk(text=tail, offset=received)
            yield await self._end(job, received)
        finally:
            self._followers[owner] -= 1
            if not self._followers[owner]:
                del self._followers[owner]

    async def _until_in_cell(self, job: Job) -> AsyncGenerator[None, None]:
        """Return once the job has started in its cell (or ended); a heartbeat (None) after
        each HEARTBEAT_S of waiting. Woken by this server's dispatcher as jobs start, and
        looks at the store every QUEUED_POLL_S for jobs that other servers start."""
        waited = 0.0
        while True:
            job = await self.store.get_job(job.user_id, job.id)
            if job.state in ENDED_STATES or job.state == "running" and await self._in_cell(job):
                return
            started = time.monotonic()
            await self._dispatcher.changed(QUEUED_POLL_S)
            waited += time.monotonic() - started
            if waited >= HEARTBEAT_S:
                waited = 0.0
                yield None

    async def _in_cell(self, job: Job) -> bool:
        try:
            await self._cells.job_status(job.user_id, job.id)
        except NotFound:  # claimed, and not started in the cell yet
            return False
        return True

    async def _end(self, job: Job, offset: int) -> JobLogEnd:
        """The job's final state: the store's once kept (the dispatcher writes it just after the
        log ends), else what the cell says."""
        for _ in range(int(SETTLE_S / QUEUED_POLL_S)):
            job = await self.store.get_job(job.user_id, job.id)
            if job.state in ENDED_STATES:
                return JobLogEnd(state=job.state, exit_code=job.exit_code, offset=offset)
            await asyncio.sleep(QUEUED_POLL_S)
        info = await self._cells.job_status(job.user_id, job.id)
        end = outcome(info, job.timeout_s)
        return JobLogEnd(state=end.state, exit_code=end.exit_code, offset=offset)

    async def artifacts(self, owner: str, job_id: str) -> Download:
        """The job's output folder as a ZIP made in the cell (links never followed)."""
        job = await self.store.get_job(owner, job_id)
        return await self._files.zip(owner, job.output_dir)


async def beating(
    source: AsyncGenerator[T, None], every_s: float
) -> AsyncGenerator[T | None, None]:
    """``source``'s items, and None after each ``every_s`` without one. One item is read ahead
    at most, so a slow reader slows ``source`` (and nothing piles up here)."""
    queue: asyncio.Queue[tuple[bool, T | BaseException | None]] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put((False, item))
            await queue.put((True, None))
        except Exception as exc:
            await queue.put((True, exc))

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                done, item = await asyncio.wait_for(queue.get(), every_s)
            except TimeoutError:
                yield None
                continue
            if isinstance(item, BaseException):
                raise item
            if done:
                return
            yield item
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.aclose()
