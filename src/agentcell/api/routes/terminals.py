"""Terminals (DESIGN §11): interactive shells in the caller's cell over a WebSocket.

``/v1/cell/terminal`` attaches to a new terminal, or with ``?session=ID`` to one that is
there (after a page reload: it outlives its WebSocket for a grace period, and replays what was
on screen). Binary messages carry keystrokes in and output out. Text messages are JSON:
the client sends ``{"type": "resize", "cols": C, "rows": R}`` (or ``{"type": "input", "data":
"…"}`` for text); the server sends ``{"type": "ready", "session": ID, …}`` first and
``{"type": "exit", "code": N}`` last, once the shell has exited. A WebSocket that another
attachment took over is closed with code 4001.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from agentcell.api.browser import TOKEN_PARAM, browser_user, first_of, refuse
from agentcell.api.deps import CurrentUser, ServicesDep
from agentcell.errors import AgentcellError, InvalidRequest
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import TerminalInfo
from agentcell.schemas import BrowserToken, TerminalSession
from agentcell.services import Services
from agentcell.store.models import User

router = APIRouter(prefix="/v1/cell", tags=["terminals"])
WS_PATH = "/v1/cell/terminal"
TAKEN_OVER = 4001  # the WebSocket close code when another attachment took the terminal
SIZE_MAX = 1000


def session_of(info: TerminalInfo) -> TerminalSession:
    return TerminalSession(
        id=info.terminal,
        pid=info.pid,
        cols=info.cols,
        rows=info.rows,
        attached=info.attached,
        exit_code=info.exit_code,
    )


@router.get("/terminals")
async def list_terminals(user: CurrentUser, services: ServicesDep) -> list[TerminalSession]:
    """Your cell's terminals, attached or waiting for their WebSocket to come back."""
    return [session_of(t) for t in await services.terminals.list(user.id)]


@router.post("/terminal-tokens")
async def terminal_token(user: CurrentUser, services: ServicesDep) -> BrowserToken:
    """A short-lived token for a browser's WebSocket to ``/v1/cell/terminal``."""
    token = await services.terminals.token(user.id)
    return BrowserToken(
        token=token.token,
        url=f"{WS_PATH}?{TOKEN_PARAM}={token.token}",
        expires_at=datetime.fromtimestamp(token.expires_at, UTC),
    )


@router.delete("/terminals/{terminal_id}")
async def close_terminal(
    terminal_id: str, user: CurrentUser, services: ServicesDep
) -> TerminalSession:
    """End a terminal: its shell and what runs in it are killed. Answers its last state, with
    the exit code."""
    return session_of(await services.terminals.close(user.id, terminal_id))


def size_of(websocket: WebSocket) -> tuple[int, int]:
    size = []
    for name, default in (("cols", "80"), ("rows", "24")):
        text = websocket.query_params.get(name, default)
        if not (text.isascii() and text.isdigit() and 0 < int(text) <= SIZE_MAX):
            raise InvalidRequest(
                f"{name}={text[:20]!r} is not a terminal size",
                hint=f"give cols and rows from 1 to {SIZE_MAX}, e.g. ?cols=80&rows=24",
            )
        size.append(int(text))
    return size[0], size[1]


@router.websocket("/terminal")
async def terminal(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    try:
        user, _ = await browser_user(
            websocket,
            (("terminal token", websocket.query_params.get(TOKEN_PARAM)),),
            services.terminals.holder,
            "POST /v1/cell/terminal-tokens",
        )
        cols, rows = size_of(websocket)
        session = websocket.query_params.get("session", "")
        async with services.terminals.attach(user.id, session, cols, rows) as (info, duplex):
            await websocket.accept()
            ready = {"type": "ready", "session": info.terminal, "cols": cols, "rows": rows}
            await websocket.send_json(ready)
            ended = await relay_terminal(websocket, duplex, user, info.terminal, services)
        if ended:
            await finish(websocket, user, info.terminal, services)
    except AgentcellError as exc:
        await refuse(websocket, exc)


async def relay_terminal(
    websocket: WebSocket, duplex: Duplex, user: User, terminal: str, services: Services
) -> bool:
    """Relay until the terminal's output ends (True) or the browser goes (False)."""
    done = await first_of(
        send_output(websocket, duplex), take_keys(websocket, duplex, user, terminal, services)
    )
    return any(task.exception() is None and task.result() is True for task in done)


async def send_output(websocket: WebSocket, duplex: Duplex) -> bool:
    try:
        while data := await duplex.recv():
            await websocket.send_bytes(data)
    except (ConnectionError, WebSocketDisconnect, RuntimeError):
        return False
    return True


async def take_keys(
    websocket: WebSocket, duplex: Duplex, user: User, terminal: str, services: Services
) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes"):
            await duplex.send(message["bytes"])
        elif message.get("text"):
            await control(message["text"], websocket, duplex, user, terminal, services)


async def control(
    text: str, websocket: WebSocket, duplex: Duplex, user: User, terminal: str, services: Services
) -> None:
    """A text message of the browser's: a resize, or text typed."""
    try:
        body: Any = json.loads(text)
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "resize":
            cols, rows = body.get("cols"), body.get("rows")
            await services.terminals.resize(user.id, terminal, cols, rows)
        elif kind == "input" and isinstance(body.get("data"), str):
            await duplex.send(body["data"].encode())
        else:
            raise InvalidRequest("a text message is a resize or an input")
    except (ValueError, AgentcellError) as exc:
        message = exc.message if isinstance(exc, AgentcellError) else f"not JSON: {exc}"
        hint = '{"type": "resize", "cols": 80, "rows": 24} or {"type": "input", "data": "ls\\n"}'
        await websocket.send_json({"type": "error", "message": message, "hint": hint})


async def finish(websocket: WebSocket, user: User, terminal: str, services: Services) -> None:
    """The output ended: the shell exited (say its code, forget the terminal), or another
    attachment took the terminal over."""
    info = await services.terminals.info(user.id, terminal)
    if info is not None and info.exit_code is None:
        await websocket.close(TAKEN_OVER, "the terminal was attached elsewhere")
        return
    code = None if info is None else (await services.terminals.close(user.id, terminal)).exit_code
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.send_json({"type": "exit", "code": code})
        await websocket.close(1000)
