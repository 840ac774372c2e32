"""``/mcp``: a Model Context Protocol server (the official SDK, streamable HTTP) in front of the
caller's own cell (DESIGN §12). ``McpDoor`` authenticates the API key as the API does, before
MCP runs; the tools (``api.mcptools``) call the services the routes call, so they are checked,
limited and audited the same way (an exec's audit record says ``started_by: "mcp"``)."""

from __future__ import annotations

import hmac
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agentcell import __version__
from agentcell.api.errors import error_response, rate_limited_response
from agentcell.api.gate import GATED, bearer
from agentcell.api.mcptools import CALLER, TOOLS, Caller, answers
from agentcell.errors import AgentcellError, Forbidden, RateLimited, Unauthorized
from agentcell.services import Services
from agentcell.store.models import User

PATH = "/mcp"
INSTRUCTIONS = (
    "Tools that work in your agentcell cell: a private, persistent Linux sandbox whose "
    "workspace is /workspace. exec runs Python (variables persist between calls in one context) "
    "or shell; file paths are relative to the workspace; jobs run in the background."
)


class McpDoor:
    """The caller's API key resolved as ``api.deps`` does it (the admin token has no cell) and
    rate-limited the same way; a refusal is our JSON error, before MCP sees the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            caller = await _authenticate(scope)
        except AgentcellError as exc:
            await _refusal(exc)(scope, receive, send)
            return
        # A copy: the SDK's Starlette app records itself as the scope's app.
        state = {**scope.get("state", {}), CALLER: caller}
        await self.app({**scope, "state": state}, receive, send)


async def _authenticate(scope: Scope) -> Caller:
    app_state = scope["app"].state
    services: Services = app_state.services
    token = bearer(scope)
    if not token:
        raise Unauthorized("no API key was sent")
    if hmac.compare_digest(token.encode(), app_state.admin_token.encode()):
        raise Forbidden("the admin token has no cell", hint="use a user's API key for /mcp")
    gated: User | None = scope.get("state", {}).get(GATED)  # known and limited already
    user = gated or await services.users.authenticate(token)
    if user is None:
        raise Unauthorized(
            "the token sent is not a valid API key",
            hint="send the API key that 'agentcell users add' printed (the admin can make a "
            "new one) as 'Authorization: Bearer <key>'",
        )
    if gated is None:  # the gate has not limited it (api/gate.py)
        app_state.limits.requests.take(user.id)
    return Caller(user, services)


def _refusal(exc: AgentcellError) -> Response:
    if isinstance(exc, RateLimited):
        return rate_limited_response(exc)
    return error_response(exc.status_code, exc.code, exc.message, exc.hint)


@dataclass(frozen=True)
class Endpoint:
    """The MCP server and the door in front of it (served at PATH)."""

    server: MCPServer[Any]
    door: McpDoor

    def run(self) -> AbstractAsyncContextManager[None]:
        """Serve MCP requests while this is entered (in the app's lifespan)."""
        return self.server.session_manager.run()


def endpoint() -> Endpoint:
    """A new MCP endpoint. Stateless: each request stands alone and is authenticated by its
    key. No DNS-rebinding check: a key in a header is what a rebound page cannot send."""
    server: MCPServer[Any] = MCPServer("agentcell", version=__version__, instructions=INSTRUCTIONS)
    for name, fn, hints in TOOLS:
        server.add_tool(answers(fn), name=name, annotations=hints)
    app = server.streamable_http_app(
        streamable_http_path=PATH,
        json_response=True,
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return Endpoint(server, McpDoor(app))
