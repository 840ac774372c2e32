"""The port relay's use cases (DESIGN §11): what listens in a user's cell, a connection to it,
and the short-lived tokens (tokens.py) that let a browser open a relayed page without the API
key."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from agentcell.config import Settings
from agentcell.errors import InvalidRequest
from agentcell.executor.protocol import Port
from agentcell.sandbox.portpool import PortStream
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit
from agentcell.services.tokens import BrowserToken, BrowserTokens
from agentcell.store.models import User


def check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise InvalidRequest(
            f"port {port} is not a TCP port", hint="give a port from 1 to 65535, e.g. 8080"
        )
    return port


class Ports:
    def __init__(
        self,
        cells: CellService,
        settings: Settings,
        audit: Audit,
        tokens: BrowserTokens,
    ) -> None:
        self._cells, self._settings, self._audit = cells, settings, audit
        self.tokens = tokens

    async def listening(self, owner: str) -> list[Port]:
        return await self._cells.ports(owner)

    def connect(
        self, owner: str, port: int, *, reuse: bool = False
    ) -> AbstractAsyncContextManager[PortStream]:
        return self._cells.connect(owner, check_port(port), reuse=reuse)

    async def token(self, owner: str, port: int) -> BrowserToken:
        token = self.tokens.issue(owner, check_port(port), self._settings.browser_token_ttl_s)
        await self._audit.record(owner, "port.token", target=str(port))
        return token

    def cookie(self, owner: str, port: int) -> BrowserToken:
        """What a browser keeps for the port once it opened a token's URL."""
        return self.tokens.issue(owner, port, self._settings.port_cookie_ttl_s)

    async def holder(self, token: str, port: int) -> User | None:
        """The user a port token (or cookie) of this port was given to, if it is still valid."""
        return await self.tokens.holder(token, port)
