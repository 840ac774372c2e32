"""``/mcp``: a Model Context Protocol server (the official SDK, streamable HTTP) in front of the
caller's own cell (DESIGN §12). ``McpDoor`` authenticates the API key as the API does, before
MCP runs; the tools (``api.mcptools``) call the services the routes call, so they are checked,
limited and audited the same way (an exec's audit record says ``started_by: "mcp"``)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agentcell import __version__
from agentcell.api.deps import principal_of_key
from agentcell.api.errors import error_response, rate_limited_response
from agentcell.api.gate import bearer
from agentcell.api.mcptools import CALLER, TOOLS, Caller, answers
from agentcell.errors import AgentcellError, Forbidden, RateLimited, Unauthorized
from agentcell.services import Services

PATH = "/mcp"
INSTRUCTIONS = (
    "Tools that work in your agentcell cell: a private, persistent Linux sandbox whose "
    "workspace is /workspace. exec runs Python (variables persist between calls in one context) "
    "or shell; file paths are relative to the workspace; jobs run in the background."
)


class McpDoor:
    """The caller's API key, resolved and rate-limited as by the API (the admin token has no
    cell); a refusal is our JSON error, before MCP sees the request."""

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
    """The bearer key's user, as the API resolves it (``deps.principal_of_key``: counted against
    their request rate); the web page's cookie is no key here."""
    services: Services = scope["app"].state.services
    token = bearer(scope)
    if not token:
        raise Unauthorized("no API key was sent")
    principal = await principal_of_key(HTTPConnection(scope), services, token)
    if principal.user is None:
        raise Forbidden("the admin token has no cell", hint="use a user's API key for /mcp")
    return Caller(principal.user, services)


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
