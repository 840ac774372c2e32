"""What the front doors (the API, and the coming web page, MCP and jobs) call: one service per
use case, each taking the owner's id and plain values, authorising by owner and writing its
audit record itself (DESIGN §2, layer 4). Services raise ``agentcell.errors``; they know
nothing of HTTP."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Self

from agentcell.config import Settings
from agentcell.egress.gateway import Gateway
from agentcell.jobs.agentjob import AgentJob
from agentcell.jobs.dispatcher import Dispatcher
from agentcell.jobs.outcome import Outcome
from agentcell.jobs.scheduler import Scheduler
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit
from agentcell.services.cells import Cells
from agentcell.services.desktop import Desktop
from agentcell.services.exec import ExecObserver, Execs
from agentcell.services.files import Files
from agentcell.services.joblogs import JobLogs
from agentcell.services.jobs import JobObserver, Jobs, JobServers
from agentcell.services.jupyter import Jupyter
from agentcell.services.limits import Limits
from agentcell.services.network import Network
from agentcell.services.ports import Ports
from agentcell.services.sessions import Sessions
from agentcell.services.terminals import Terminals
from agentcell.services.tokens import BrowserTokens
from agentcell.services.turns import ModelFactory, Turns
from agentcell.services.users import Users
from agentcell.services.websessions import WebSessions
from agentcell.store import Store
from agentcell.store.models import Job, Schedule

if TYPE_CHECKING:
    from pydantic_ai.models import Model


class Services:
    """Every service of one server, over its store and its cells; ``async with`` it while the
    server serves."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        cells: CellService,
        gateway: Gateway,
        limits: Limits,
        observe_exec: ExecObserver,
        model_factory: ModelFactory | None = None,
        observe_jobs: JobObserver | None = None,
    ) -> None:
        self._store = store
        self.audit = Audit(store)
        self.web = WebSessions(store, settings.session_ttl_s)
        self.users = Users(store, cells, self.audit, self.web)
        self.network = Network(store, settings, gateway, self.audit)
        self.cells = Cells(cells, store, limits, self.audit, self.network.mode)
        self.execs = Execs(self.cells, settings, observe_exec)
        tokens = BrowserTokens(gateway.box.derive(b"port tokens"), store)
        self.ports = Ports(cells, settings, self.audit, tokens)
        self.terminals = Terminals(cells, settings, self.audit, tokens)
        self.desktop = Desktop(cells, settings, self.audit, tokens)
        self.jupyter = Jupyter(cells, self.audit)
        self.files = Files(self.cells, settings, self.audit)
        self.turns = Turns(
            store,
            cells,
            settings,
            self.audit,
            model_factory,
            servers=lambda owner: JobServers(self.jobs, owner),
        )
        self.sessions = Sessions(store, self.turns, self.audit)
        self._observe_jobs = observe_jobs
        dispatcher = Dispatcher(
            store, cells, settings, self._agent_job, self._job_started, self._job_ended
        )
        scheduler = Scheduler(store, self._fired)
        self.jobs = Jobs(store, cells, settings, self.audit, dispatcher, scheduler, self._model)
        self.joblogs = JobLogs(store, cells, self.files, dispatcher)
        self.users.before_delete = dispatcher.drop_owner
        self._settings, self._cells = settings, cells

    async def __aenter__(self) -> Self:
        await self._store.close_unfinished_execs()  # a killed server's last execs
        self.turns.check_model()
        await self.jobs.dispatcher.start()
        self.jobs.scheduler.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.jobs.scheduler.close()
        await self.jobs.dispatcher.close()
        await self.turns.close()

    # --- what the job dispatcher and scheduler call back --------------------------------------

    def _model(self) -> Model:
        return self.turns.model()

    def _agent_job(self, job: Job) -> AgentJob:
        return AgentJob(
            self._cells,
            self._settings,
            job.user_id,
            job.id,
            job.prompt,
            job.output_dir,
            self._model(),
        )

    def _job_started(self, job: Job) -> None:
        if self._observe_jobs is not None and job.started_at is not None:
            waited = (job.started_at - job.created_at).total_seconds()
            self._observe_jobs.observe_job_start(job.kind, waited)

    async def _job_ended(self, job: Job, end: Outcome) -> None:
        if self._observe_jobs is not None:
            self._observe_jobs.observe_job_end(job.kind, job.state)
        detail = f"{end.state}: {end.reason}" if end.reason else end.state
        await self.audit.record(
            job.user_id, "job.end", target=job.id, detail=detail, ok=end.state == "succeeded"
        )

    async def _fired(self, schedule: Schedule, job: Job | None, skipped: str) -> None:
        if job is not None:
            self.jobs.dispatcher.nudge()
        detail = f"skipped: {skipped}" if skipped else (job.id if job else "")
        await self.audit.record(
            schedule.user_id, "schedule.fire", target=schedule.id, detail=detail, ok=not skipped
        )


__all__ = ["ExecObserver", "JobObserver", "ModelFactory", "Services"]
