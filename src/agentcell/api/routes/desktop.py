"""The live desktop (DESIGN §11): ``GET /v1/cell/desktop`` starts it in the caller's cell and
gives the viewer's URL; ``/v1/cell/desktop/`` is the viewer (a page of ours on noVNC's RFB
client, which this server serves from web/node_modules: no CDN); the WebSocket
``/v1/cell/desktop/websockify`` carries RFB to the cell's VNC server, binary frames both ways.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, WebSocket
from fastapi.responses import FileResponse
from starlette.websockets import WebSocketDisconnect

from agentcell.api.browser import TOKEN_PARAM, browser_user, first_of, refuse
from agentcell.api.deps import CurrentUser, ServicesDep
from agentcell.api.security import page_policy
from agentcell.errors import AgentcellError, NotFound
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import DESKTOP_VNC_PORT
from agentcell.schemas import CellDesktop
from agentcell.services import Services

router = APIRouter(prefix="/v1/cell", tags=["desktop"])
PREFIX = "/v1/cell/desktop/"
VIEWER = Path(__file__).resolve().parent.parent / "static" / "desktop"
VIEWER_FILES = {"desktop.js": "text/javascript", "desktop.css": "text/css"}
NOVNC = "node_modules/@novnc/novnc"  # in settings.web_dir: mounted at PREFIX + "novnc"


@router.get("/desktop")
async def desktop(user: CurrentUser, services: ServicesDep) -> CellDesktop:
    """Start the live desktop of your cell (full image) unless it runs, and give the links to
    watch it: the viewer page and its WebSocket, each with a short-lived token."""
    info = await services.desktop.start(user.id)
    token = await services.desktop.token(user.id)
    return CellDesktop(
        url=f"{PREFIX}?{TOKEN_PARAM}={token.token}",
        websocket=f"{PREFIX}websockify?{TOKEN_PARAM}={token.token}",
        view_only=True,
        display=info.display,
        width=info.width,
        height=info.height,
        expires_at=datetime.fromtimestamp(token.expires_at, UTC),
    )


@router.get("/desktop/", include_in_schema=False)
async def viewer() -> FileResponse:
    # The web page shows the viewer in a frame of its own origin.
    policy = page_policy(frame_ancestors="'self'")
    return FileResponse(
        VIEWER / "index.html", media_type="text/html", headers={"content-security-policy": policy}
    )


@router.get("/desktop/{name}", include_in_schema=False)
async def viewer_file(name: str) -> FileResponse:
    if name not in VIEWER_FILES:
        raise NotFound(f"no such file of the desktop viewer: {name[:40]!r}")
    return FileResponse(VIEWER / name, media_type=VIEWER_FILES[name])


@router.websocket("/desktop/websockify")
async def websockify(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    try:
        user, _ = await browser_user(
            websocket,
            (("desktop token", websocket.query_params.get(TOKEN_PARAM)),),
            services.desktop.holder,
            "GET /v1/cell/desktop",
        )
        async with services.desktop.connect(user.id, DESKTOP_VNC_PORT) as duplex:
            wanted = websocket.scope.get("subprotocols", [])
            await websocket.accept(subprotocol="binary" if "binary" in wanted else None)
            await bridge(websocket, duplex)
    except AgentcellError as exc:
        await refuse(websocket, exc)


async def bridge(websocket: WebSocket, duplex: Duplex) -> None:
    """RFB bytes both ways until either side is done."""

    async def to_browser() -> None:
        while data := await duplex.recv():
            await websocket.send_bytes(data)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(1000)

    async def to_cell() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") or (message.get("text") or "").encode()
            if data:
                await duplex.send(data)

    await first_of(to_browser(), to_cell())
