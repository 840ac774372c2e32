"""Who calls the routes browsers reach too (the port relay, the terminal): the API key in the
header, as everywhere, or a browser token (services/tokens.py) where a browser cannot send a
header — a page load, an ``<img>``, a WebSocket."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import HTTPConnection

from agentcell.api.gate import GATED
from agentcell.errors import Forbidden, Unauthorized
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
        key = key.strip()
        if hmac.compare_digest(key.encode(), conn.app.state.admin_token.encode()):
            raise Forbidden("the admin token has no cell", hint="use a user's API key for this")
        gated: User | None = getattr(conn.state, GATED, None)  # known and limited already
        if (user := gated or await services.users.authenticate(key)) is None:
            raise Unauthorized("the token sent is not a valid API key")
        if gated is None:
            conn.app.state.limits.requests.take(user.id)
        return user, "key"
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
