"""The terminal's use cases (DESIGN §11): interactive shells in a user's cell, attached to
and detached from (a page reload keeps the shell), resized, listed and ended; and the browser
token a web page's WebSocket carries instead of the API key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agentcell.config import Settings
from agentcell.errors import NotFound
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import TerminalInfo
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit
from agentcell.services.tokens import BrowserToken, BrowserTokens
from agentcell.store.models import User

SCOPE = "terminal"
LIST_HINT = "list your terminals: GET /v1/cell/terminals"


class Terminals:
    def __init__(
        self,
        cells: CellService,
        settings: Settings,
        audit: Audit,
        tokens: BrowserTokens,
    ) -> None:
        self._cells, self._settings, self._audit = cells, settings, audit
        self._tokens = tokens

    @asynccontextmanager
    async def attach(
        self, owner: str, terminal: str, cols: int, rows: int
    ) -> AsyncIterator[tuple[TerminalInfo, Duplex]]:
        try:
            async with self._cells.terminal(owner, terminal, cols, rows) as (info, duplex):
                if not terminal:
                    await self._audit.record(owner, "terminal.open", target=info.terminal)
                yield info, duplex
        except NotFound as exc:
            raise NotFound(exc.message, hint=LIST_HINT) from exc

    async def list(self, owner: str) -> list[TerminalInfo]:
        return await self._cells.terminals(owner)

    async def info(self, owner: str, terminal: str) -> TerminalInfo | None:
        return next((t for t in await self.list(owner) if t.terminal == terminal), None)

    async def resize(self, owner: str, terminal: str, cols: int, rows: int) -> None:
        await self._cells.resize_terminal(owner, terminal, cols, rows)

    async def close(self, owner: str, terminal: str) -> TerminalInfo:
        try:
            info = await self._cells.close_terminal(owner, terminal)
        except NotFound as exc:
            raise NotFound(exc.message, hint=LIST_HINT) from exc
        await self._audit.record(
            owner, "terminal.close", target=terminal, detail=f"exit code {info.exit_code}"
        )
        return info

    async def token(self, owner: str) -> BrowserToken:
        token = self._tokens.issue(owner, SCOPE, self._settings.browser_token_ttl_s)
        await self._audit.record(owner, "terminal.token")
        return token

    async def holder(self, token: str) -> User | None:
        """The user a terminal token was given to, if it is still valid."""
        return await self._tokens.holder(token, SCOPE)
