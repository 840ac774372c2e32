"""What the front doors (the API, and the coming web page, MCP and jobs) call: one service per
use case, each taking the owner's id and plain values, authorising by owner and writing its
audit record itself (DESIGN §2, layer 4). Services raise ``agentcell.errors``; they know
nothing of HTTP."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from agentcell.config import Settings
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit
from agentcell.services.cells import Cells
from agentcell.services.exec import ExecObserver, Execs
from agentcell.services.files import Files
from agentcell.services.limits import Limits
from agentcell.services.sessions import Sessions
from agentcell.services.turns import ModelFactory, Turns
from agentcell.services.users import Users
from agentcell.store import Store


class Services:
    """Every service of one server, over its store and its cells; ``async with`` it while the
    server serves."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        cells: CellService,
        limits: Limits,
        observe_exec: ExecObserver,
        model_factory: ModelFactory | None = None,
    ) -> None:
        self._store = store
        self.audit = Audit(store)
        self.users = Users(store, cells, self.audit)
        self.cells = Cells(cells, store, limits, self.audit)
        self.execs = Execs(self.cells, settings, observe_exec)
        self.files = Files(self.cells, settings, self.audit)
        self.turns = Turns(store, cells, settings, self.audit, model_factory)
        self.sessions = Sessions(store, self.turns, self.audit)

    async def __aenter__(self) -> Self:
        await self._store.close_unfinished_execs()  # a killed server's last execs
        self.turns.check_model()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.turns.close()


__all__ = ["ExecObserver", "ModelFactory", "Services"]
