"""The live desktop's use cases (DESIGN §11): start it in a user's cell, the browser token its
viewer page carries, and the connection to its VNC server (through the port relay's
mechanism: the cell keeps no network)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from agentcell.config import Settings
from agentcell.errors import InvalidRequest
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import DesktopInfo
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit
from agentcell.services.tokens import BrowserToken, BrowserTokens
from agentcell.store.models import User

SCOPE = "desktop"
FULL_IMAGE_HINT = (
    "the live desktop is in the full image: the server's admin sets AGENTCELL_IMAGE_PROFILE=full "
    "(and builds it: agentcell image build --profile full)"
)


class Desktop:
    def __init__(
        self,
        cells: CellService,
        settings: Settings,
        audit: Audit,
        tokens: BrowserTokens,
    ) -> None:
        self._cells, self._settings, self._audit = cells, settings, audit
        self._tokens = tokens

    async def start(self, owner: str) -> DesktopInfo:
        try:
            info = await self._cells.start_desktop(owner)
        except InvalidRequest as exc:
            raise InvalidRequest(exc.message, hint=FULL_IMAGE_HINT) from exc
        await self._audit.record(owner, "desktop.open", target=info.display)
        return info

    async def token(self, owner: str) -> BrowserToken:
        return self._tokens.issue(owner, SCOPE, self._settings.browser_token_ttl_s)

    async def holder(self, token: str) -> User | None:
        return await self._tokens.holder(token, SCOPE)

    def connect(self, owner: str, vnc_port: int) -> AbstractAsyncContextManager[Duplex]:
        return self._cells.connect(owner, vnc_port)
