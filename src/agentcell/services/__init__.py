"""What the front doors (the API, and the coming web page, MCP and jobs) call: one service per
use case, each taking the owner's id and plain values, authorising by owner and writing its
audit record itself (DESIGN §2, layer 4). Services raise ``agentcell.errors``; they know
nothing of HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Self

from agentcell.config import Settings
from agentcell.sandbox.manager import CellManager
from agentcell.services.audit import Audit
from agentcell.services.cells import Cells
from agentcell.services.exec import ExecObserver, Execs
from agentcell.services.files import Files
from agentcell.services.limits import Limits
from agentcell.services.sessions import Sessions
from agentcell.services.turns import ModelFactory, Turns
from agentcell.services.users import Users
from agentcell.store import Store


@dataclass
class Services:
    audit: Audit
    users: Users
    cells: Cells
    execs: Execs
    files: Files
    sessions: Sessions
    turns: Turns
    _store: Store
    _manager: CellManager

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: Store,
        manager: CellManager,
        limits: Limits,
        observe_exec: ExecObserver,
        model_factory: ModelFactory | None = None,
    ) -> Services:
        audit = Audit(store)
        cells = Cells(manager, store, limits, audit)
        turns = Turns(store, manager, settings, audit, model_factory)
        return cls(
            audit=audit,
            users=Users(store, manager, audit),
            cells=cells,
            execs=Execs(cells, settings, observe_exec),
            files=Files(cells, settings, audit),
            sessions=Sessions(store, turns, audit),
            turns=turns,
            _store=store,
            _manager=manager,
        )

    async def __aenter__(self) -> Self:
        await self._store.close_unfinished_execs()  # a killed server's last execs
        self._manager.exec_audit = self._store  # every exec any caller runs is audited
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
