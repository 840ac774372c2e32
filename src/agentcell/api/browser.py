"""What the routes browsers reach share (the port relay, the terminal, the desktop): who calls
— the API key in the header, as everywhere, or a browser token (services/tokens.py) where a
browser cannot send a header (a page load, an ``<img>``, a WebSocket) —, how a WebSocket is
refused, and the two ways of a WebSocket bridge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from agentcell.api.deps import principal_of_key
from agentcell.api.errors import error_response
from agentcell.errors import AgentcellError, Forbidden, Unauthorized
from agentcell.services import Services
from agentcell.store.models import User

TOKEN_PARAM = "token"  # the query parameter a browser token comes in


async def browser_user(
    conn: HTTPConnection,
    tokens: Sequence[tuple[str, str | None]],
    holder: Callable[[str], Awaitable[User | None]],
    renew: str,
) -> tuple[User, str]:
    """The caller, and how they came: ``"key"``, or the kind of the first of ``tokens`` (kind,
    value) sent, checked by ``holder``. ``renew`` is how to get a new token, for the error."""
    services: Services = conn.app.state.services
    scheme, _, key = conn.headers.get("authorization", "").partition(" ")
    if key.strip() and scheme.lower() == "bearer":
        principal = await principal_of_key(conn, services, key.strip())
        if principal.user is None:
            raise Forbidden("the admin token has no cell", hint="use a user's API key for this")
        return principal.user, "key"
    for kind, token in tokens:
        if token:
            if (user := await holder(token)) is None:
                raise Unauthorized(
                    f"the {kind} is not valid: it expired, or it is for something else",
                    hint=f"get a new one: {renew}",
                )
            return user, kind
    raise Unauthorized(
        "no API key or browser token was sent",
        hint=f"send the header 'Authorization: Bearer <your API key>', or get a token: {renew}",
    )


async def refuse(websocket: WebSocket, exc: AgentcellError) -> None:
    """Before the handshake, a real HTTP error (the browser's code can read its status); after
    it, a close with 1011 and the message."""
    if websocket.application_state == WebSocketState.CONNECTING:
        await websocket.send_denial_response(
            error_response(exc.status_code, exc.code, exc.message, exc.hint)
        )
    elif websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(1011, exc.message[:120])


async def first_of(*ways: Coroutine[Any, Any, Any]) -> set[asyncio.Future[Any]]:
    """Run the ways of a bridge until the first ends (the done ones); cancel the others."""
    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(way) for way in ways]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
