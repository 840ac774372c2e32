"""Jobs from the queue to their end, on this server.

- Start: queued jobs (in the store, whichever server took them in) start round-robin between
  users (``fairness``), within the per-user and this server's running limits. A job is claimed
  by one conditional update, so of several servers exactly one starts it.
- Exec jobs run in the cell, detached (the executor runs them, logs them and enforces their
  timeout); here one task per job waits for its end and writes its final state. Stopping the
  server leaves them running; at start it re-attaches to the jobs it ran, and a job that ended
  meanwhile gets the state its cell kept.
- Agent jobs run here (``agentjob``); a server that stops marks them ``interrupted``.
- Cancel: a job is "running" once claimed, before its start reaches the cell (which may be
  being made). A cancel then keeps its start from being sent at all; one while the start is on
  its way waits for the cell's answer, then kills it there (``_Launch``).
- Work-aware idle: while an owner has a job queued or running here, their cell is held busy
  (never paused, stopped or removed); a running exec job's wait holds it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agentcell.config import Settings
from agentcell.errors import AgentcellError, Conflict, NotFound
from agentcell.executor.protocol import WORKSPACE, JobInfo, JobStart
from agentcell.jobs.agentjob import AgentJob
from agentcell.jobs.fairness import Turns, pick
from agentcell.jobs.outcome import Outcome, outcome
from agentcell.sandbox.service import CellService
from agentcell.store import Store
from agentcell.store.models import Job

log = logging.getLogger(__name__)

POLL_S = 1.0  # the queue is looked at this often even when nothing nudges it
WATCH_RETRY_S = (0.5, 2.0, 5.0)  # between tries to reach a cell that went away mid-wait
STOPPED = "the server stopped while the agent worked; retry the job to run it again"
REQUEUED = "the server stopped before the job started in its cell: queued again"

JobEnded = Callable[[Job, Outcome], Coroutine[Any, Any, None]]
"""Told of each job's end once its state is kept (audit, metrics)."""
JobStarted = Callable[[Job], None]


@dataclass
class _Launch:
    """An exec job claimed here, until its cell has answered its start (or it never will)."""

    sent: bool = False  # the start is on its way to the cell
    cancelled: bool = False  # a cancel came first: the start is never sent
    done: asyncio.Event = field(default_factory=asyncio.Event)


def command(job: Job) -> str:
    """What the cell runs for an exec job: its output folder made, then its code or file."""
    out = f"{WORKSPACE}/{job.output_dir}"
    program = ["python3", "-u"] if job.language == "python" else ["bash"]
    run = [*program, "--", job.file] if job.file else [*program, "-c", job.code]
    return f"mkdir -p -- {shlex.quote(out)} && exec {shlex.join(run)}"


class Dispatcher:
    def __init__(
        self,
        store: Store,
        cells: CellService,
        settings: Settings,
        make_agent: Callable[[Job], AgentJob],
        on_start: JobStarted,
        on_end: JobEnded,
    ) -> None:
        self.store, self.cells, self.settings = store, cells, settings
        self.node = settings.instance
        self._make_agent, self._on_start, self._on_end = make_agent, on_start, on_end
        self._turns = Turns()
        self._nudged = asyncio.Event()
        self._changed = asyncio.Event()  # set (and replaced) when a job starts or ends here
        self._running: dict[str, asyncio.Task[None]] = {}  # job id -> its task, on this server
        self._owner_of: dict[str, str] = {}  # job id -> its owner, for the jobs running here
        self._launches: dict[str, _Launch] = {}  # exec jobs claimed here, until started
        self._agents: dict[str, AgentJob] = {}
        self._holds: dict[str, asyncio.Event] = {}  # owner -> set to release their cell
        self._dropped: set[str] = set()  # owners being deleted: their jobs are not touched
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Re-attach to what this server ran before it stopped, then serve the queue."""
        for job in await self.store.running_jobs(node=self.node):
            if job.kind == "exec":
                self._track(job, self._watch(job))
            else:
                await self._end(job, Outcome("interrupted", STOPPED, None))
                self._spawn(self._close_log(job, 1))
        self._loop = asyncio.create_task(self._serve(), name="job dispatcher")

    def nudge(self) -> None:
        """Look at the queue now (a job was queued, or a slot freed)."""
        self._nudged.set()

    async def changed(self, timeout_s: float) -> None:
        """Return when a job next starts in its cell or ends on this server, or after
        ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def close(self) -> None:
        """Stop serving: exec jobs go on in their cells (re-attached at the next start);
        agent jobs end ``interrupted``."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        for agent in list(self._agents.values()):
            agent.stop(STOPPED, "interrupted")
        agents = [self._running[i] for i in self._agents if i in self._running]
        await asyncio.gather(*agents, return_exceptions=True)
        for task in [*self._running.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._running.values(), *self._tasks, return_exceptions=True)
        for release in self._holds.values():
            release.set()

    async def drop_owner(self, owner: str) -> None:
        """Before the owner is deleted: stop following their jobs (their cell goes, and
        their jobs with it; a watch must not bring the cell back)."""
        self._dropped.add(owner)
        mine = [i for i, o in self._owner_of.items() if o == owner]
        for job_id in mine:
            if (agent := self._agents.get(job_id)) is not None:
                agent.stop("its owner was deleted", "interrupted")
            self._running[job_id].cancel()
        await asyncio.gather(*(self._running[i] for i in mine), return_exceptions=True)
        if (release := self._holds.pop(owner, None)) is not None:
            release.set()

    # --- the queue ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), POLL_S)
            self._nudged.clear()
            try:
                await self._dispatch()
            except Exception:  # the next round tries again
                log.exception("job dispatch failed")

    async def _dispatch(self) -> None:
        s = self.settings
        queued = [j for j in await self.store.queued_jobs() if j.user_id not in self._dropped]
        running = [j for j in await self.store.running_jobs() if j.user_id not in self._dropped]
        self._hold_cells({j.user_id for j in queued} | {j.user_id for j in running})
        free = s.jobs_running_max - len(self._running)
        if not queued or free <= 0:
            return
        per_user = Counter(j.user_id for j in running)
        for job in pick(
            queued, per_user, per_user=s.jobs_running_per_user, free=free, turns=self._turns
        ):
            claimed = await self.store.set_job_state(
                job.user_id, job.id, "running", "", expect={"queued"}, node=self.node
            )
            if claimed is None:  # cancelled meanwhile, or another server took it
                continue
            self._turns.started(job.user_id)
            self._on_start(claimed)
            if claimed.kind == "exec":  # before any await: a cancel may come at once
                self._launches[claimed.id] = _Launch()
            self._track(claimed, self._run(claimed))
        self._turns.forget(j.user_id for j in queued)

    def _track(self, job: Job, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"job {job.id}")
        self._running[job.id] = task
        self._owner_of[job.id] = job.user_id

        def done(_: asyncio.Task[None]) -> None:
            if self._running.get(job.id) is task:  # not a later attempt's (re-queued)
                del self._running[job.id]
                self._agents.pop(job.id, None)
                self._owner_of.pop(job.id, None)
            self.nudge()

        task.add_done_callback(done)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one job -----------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        if job.kind == "agent":
            await self._run_agent(job)
            return
        launch = self._launches[job.id]
        try:
            started = await self._start(job, launch)
        finally:
            del self._launches[job.id]
            launch.done.set()
        if started:
            await self._watch(job)

    async def _start(self, job: Job, launch: _Launch) -> bool:
        """Start an exec job in its cell, unless it is cancelled first: whether it runs there."""
        start = JobStart(
            id=job.id,
            code=command(job),
            language="shell",
            env={"AGENTCELL_JOB_ID": job.id, "AGENTCELL_OUTPUT": f"{WORKSPACE}/{job.output_dir}"},
            timeout_s=job.timeout_s,
            log_limit=self.settings.job_log_max_bytes,
        )
        try:
            await self.cells.ensure(job.user_id)  # the long part, if the cell is made now
            if launch.cancelled:
                return False  # it never reaches its cell
            launch.sent = True
            await self.cells.start_job(job.user_id, start)
        except Conflict:
            pass  # it started already: this server stopped between the start and its record
        except AgentcellError as exc:
            await self._end(job, Outcome("failed", f"it could not start: {exc.message}", None))
            return False
        self._signal()
        # A cancel that did not know of this launch (through another server, say) found no job
        # in the cell; it recorded the job cancelled first, so that it is seen here.
        with contextlib.suppress(NotFound):
            if (await self.store.get_job(job.user_id, job.id)).state == "running":
                return True
        with contextlib.suppress(AgentcellError):
            await self.cells.cancel_job(job.user_id, job.id)
        return False

    async def _watch(self, job: Job) -> None:
        """Wait for an exec job's end in its cell, and keep its final state."""
        for pause in (*WATCH_RETRY_S, None):
            try:
                info = await self.cells.wait_job(job.user_id, job.id)
                break
            except NotFound:  # the server stopped between claiming it and starting it
                await self._requeue(job)
                return
            except AgentcellError as exc:  # the cell died or was restarted under it
                found = await self._status(job)
                if found is not None and found.state != "running":
                    info = found
                    break
                if pause is None:
                    await self._end(job, Outcome("interrupted", f"its cell failed: {exc}", None))
                    return
                await asyncio.sleep(pause)
        await self._end(job, outcome(info, job.timeout_s), info.log_bytes)

    async def _requeue(self, job: Job) -> None:
        """A job claimed but never started in its cell goes back to the queue: it never ran."""
        again = await self.store.set_job_state(
            job.user_id, job.id, "queued", REQUEUED, expect={"running"}, started_at=None
        )
        if again is not None:
            self.nudge()

    async def _status(self, job: Job) -> JobInfo | None:
        try:
            return await self.cells.job_status(job.user_id, job.id)
        except AgentcellError:
            return None

    async def _run_agent(self, job: Job) -> None:
        try:
            agent = self._make_agent(job)
        except AgentcellError as exc:  # no model is configured any more
            await self._end(job, Outcome("failed", exc.message, None))
            return
        self._agents[job.id] = agent
        try:
            result = await agent.run(job.timeout_s, self._signal)
        except AgentcellError as exc:  # its log could not be opened in the cell
            await self._end(job, Outcome("failed", f"it could not start: {exc.message}", None))
            return
        status = await self._status(job)
        await self._end(job, result, status.log_bytes if status else None)
        await agent.finish(0 if result.state == "succeeded" else 1)

    async def _close_log(self, job: Job, exit_code: int) -> None:
        with contextlib.suppress(AgentcellError):
            await self.cells.end_job(job.user_id, job.id, exit_code)

    async def _end(self, job: Job, result: Outcome, log_bytes: int | None = None) -> None:
        fields: dict[str, Any] = {"exit_code": result.exit_code}
        if log_bytes is not None:
            fields["log_bytes"] = log_bytes
        try:
            ended = await self.store.set_job_state(
                job.user_id, job.id, result.state, result.reason, expect={"running"}, **fields
            )
        except NotFound:  # deleted meanwhile, with its owner
            return
        self._signal()
        if ended is not None:  # else it was cancelled (and recorded) already
            await self._on_end(ended, result)

    # --- cancel ------------------------------------------------------------------------------

    async def cancel(self, job: Job, why: str) -> Job | None:
        """Cancel a queued or running job; the job as it is then (None: it had ended)."""
        if job.state == "queued":
            done = await self.store.set_job_state(
                job.user_id, job.id, "cancelled", why, expect={"queued"}
            )
            if done is not None:
                return done
            job = await self.store.get_job(job.user_id, job.id)  # it started meanwhile
        if job.state != "running":
            return None
        if job.kind == "agent":
            agent = self._agents.get(job.id)
            if agent is not None:
                agent.stop(why)
                await asyncio.wait({self._running[job.id]})
                return await self.store.get_job(job.user_id, job.id)
            # Another server runs it: it is recorded as cancelled; that server's end is ignored.
            return await self.store.set_job_state(
                job.user_id, job.id, "cancelled", why, expect={"running"}
            )
        launch = self._launches.get(job.id)
        if launch is not None and not launch.sent:
            launch.cancelled = True  # its start is never sent: nothing of it runs anywhere
            return await self._cancelled(job, why, None)
        if launch is not None:
            await launch.done.wait()  # its start is on its way: the cell answers it at once
        info = await self._cancel_in_cell(job)  # its whole tree is dead now
        if info is None:  # not in its cell: recorded first, then once more in case it came
            cancelled = await self._cancelled(job, why, None)
            await self._cancel_in_cell(job)
            return cancelled
        return await self._cancelled(job, why, info)

    async def _cancel_in_cell(self, job: Job) -> JobInfo | None:
        try:
            return await self.cells.cancel_job(job.user_id, job.id)
        except NotFound:
            return None

    async def _cancelled(self, job: Job, why: str, info: JobInfo | None) -> Job:
        fields = {} if info is None else {"exit_code": info.exit_code, "log_bytes": info.log_bytes}
        cancelled = await self.store.set_job_state(
            job.user_id, job.id, "cancelled", why, expect={"running"}, **fields
        )
        if cancelled is not None:
            code = None if info is None else info.exit_code
            await self._on_end(cancelled, Outcome("cancelled", why, code))
            return cancelled
        return await self.store.get_job(job.user_id, job.id)

    # --- idle --------------------------------------------------------------------------------

    def _hold_cells(self, owners: set[str]) -> None:
        """Hold busy the cells of owners with work; let go of the others."""
        for owner in set(self._holds) - owners:
            self._holds.pop(owner).set()
        for owner in owners - set(self._holds):
            self._holds[owner] = release = asyncio.Event()
            self._spawn(self._hold(owner, release))

    async def _hold(self, owner: str, release: asyncio.Event) -> None:
        try:
            if await self.cells.status(owner) is None:
                return  # no cell yet: the job's start makes it
            async with self.cells.using(owner):
                await release.wait()
        except AgentcellError as exc:
            log.info("cannot hold the cell of %s while it has jobs: %s", owner, exc)
        finally:
            if self._holds.get(owner) is release:
                del self._holds[owner]
