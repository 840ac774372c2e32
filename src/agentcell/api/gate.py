"""The rate limit, applied before the framework's work: a user who floods the server gets each
429 for the cost of one header lookup instead of a routed, authenticated request (about a
millisecond of the server's CPU each), so the flood takes less from everyone else.

Only keys the server has recently seen (the key cache of services/users.py) are limited here;
the first request of a key, and the admin's, go on to the authentication dependency, which
limits them there.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agentcell.api.errors import rate_limited_response
from agentcell.errors import RateLimited
from agentcell.services import Services
from agentcell.services.limits import Limits

GATED = "gated_user"  # in the scope's state: the key's user, whose token the gate spent
OPEN_PATHS = frozenset({"/healthz", "/metrics"})  # not authenticated, so never limited by key


class _Route:
    path = "(rate limited)"  # the route label in /metrics of what the gate refused


REFUSED = _Route()


class RateGate:
    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services | None = getattr(scope["app"].state, "services", None)
        if (
            scope["type"] == "http"
            and scope["path"] not in OPEN_PATHS
            and services
            and (user := services.users.known(bearer(scope)))
        ):
            try:
                self.limits.requests.take(user.id)
            except RateLimited as exc:
                scope["route"] = REFUSED
                await rate_limited_response(exc)(scope, receive, send)
                return
            scope.setdefault("state", {})[GATED] = user
        await self.app(scope, receive, send)


def bearer(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""
