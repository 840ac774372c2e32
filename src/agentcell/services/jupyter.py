"""JupyterLab in a user's cell (DESIGN §11, full image): started on demand on the cell's
loopback, with its base URL set to the port relay's path so that every page, asset and kernel
WebSocket goes through the relay. It has no token or password of its own: the relay lets only
the cell's owner in (by API key, or by a port token's cookie)."""

from __future__ import annotations

import asyncio
import shlex
import time

from agentcell.errors import ExecutorError, InvalidRequest
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit

PORT = 8888
BASE_URL = f"/v1/cell/ports/absolute/{PORT}/"
LOG = "/tmp/agentcell-jupyter.log"
START_S = 90.0  # a cold start of JupyterLab in a 1-CPU cell takes several seconds
NO_JUPYTER = 3
COMMAND = [
    "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={PORT}", "--port-retries=0",
    f"--ServerApp.base_url={BASE_URL}", "--ServerApp.root_dir=/workspace",
    "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.allow_remote_access=True",
    "--ServerApp.disable_check_xsrf=True",  # the relay's cookie is SameSite=Strict
]  # fmt: skip
START = (
    f"command -v jupyter >/dev/null || exit {NO_JUPYTER}\nnohup {shlex.join(COMMAND)} >{LOG} 2>&1 &"
)
FULL_IMAGE_HINT = (
    "JupyterLab is in the full image: the server's admin sets AGENTCELL_IMAGE_PROFILE=full "
    "(and builds it: agentcell image build --profile full)"
)


class Jupyter:
    def __init__(self, cells: CellService, audit: Audit) -> None:
        self._cells, self._audit = cells, audit
        self._starting: dict[str, asyncio.Lock] = {}

    async def start(self, owner: str) -> str:
        """JupyterLab's base path on this server, once it answers there (started if it was not
        running)."""
        async with self._starting.setdefault(owner, asyncio.Lock()):
            if not await self._listening(owner):
                await self._launch(owner)
        return BASE_URL

    async def _listening(self, owner: str) -> bool:
        return any(p.port == PORT for p in await self._cells.ports(owner))

    async def _launch(self, owner: str) -> None:
        started = await self._cells.exec(owner, START, "shell", background=True, env={})
        if started.exit_code == NO_JUPYTER:
            raise InvalidRequest("this cell's image has no JupyterLab", hint=FULL_IMAGE_HINT)
        await self._audit.record(owner, "jupyter.start")
        deadline = time.monotonic() + START_S
        while not await self._listening(owner):
            if time.monotonic() > deadline:
                tail = await self._cells.exec(owner, f"tail -5 {LOG}", "shell", env={})
                raise ExecutorError(
                    f"JupyterLab did not start within {START_S:g} s: "
                    + " | ".join(tail.stdout.strip().splitlines()),
                )
            await asyncio.sleep(0.25)
