"""The port relay (DESIGN §11): servers listening in the caller's cell, reached at
``/v1/cell/ports/{port}/{path}`` (HTTP and WebSocket) while the cell keeps no network.

``/v1/cell/ports/{port}/x`` reaches ``/x`` on the server; ``/v1/cell/ports/absolute/{port}/x``
passes the whole path on, for servers told to serve under that prefix (JupyterLab's base URL),
as jupyter-server-proxy does. Callers authenticate with the API key, or — browsers, which
cannot send it on a page load, an ``<img>`` or a WebSocket — with a port token: opening the
token's URL trades it for an HttpOnly cookie of that port's (the URL is then left without it).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import h11
from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import RedirectResponse
from starlette.requests import HTTPConnection

from agentcell.api import relay
from agentcell.api.browser import TOKEN_PARAM, browser_user, refuse
from agentcell.api.deps import CurrentUser, ServicesDep, SettingsDep
from agentcell.api.origins import SANDBOX, browser_url, on_preview
from agentcell.api.streams import TimedStreamingResponse
from agentcell.errors import AgentcellError, InvalidRequest
from agentcell.schemas import CellJupyter, CellPort, PortToken, PortTokenRequest
from agentcell.services import Services
from agentcell.services.jupyter import PORT as JUPYTER_PORT
from agentcell.store.models import User

router = APIRouter(prefix="/v1/cell", tags=["ports"])
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
COOKIE = relay.OUR_COOKIES + "_port_{port}"


def port_url(port: int) -> str:
    return f"{relay.PREFIX}{port}/"


def parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidRequest(
            f"{text[:20]!r} is not a TCP port", hint="give a port from 1 to 65535, e.g. 8080"
        )
    return int(text)


@router.get("/ports")
async def list_ports(user: CurrentUser, services: ServicesDep) -> list[CellPort]:
    """The TCP ports listening in your cell, each with its relay URL."""
    return [
        CellPort(port=p.port, address=p.address, pid=p.pid, command=p.command, url=port_url(p.port))
        for p in await services.ports.listening(user.id)
    ]


@router.post("/port-tokens")
async def port_token(
    body: PortTokenRequest, request: Request, user: CurrentUser, services: ServicesDep
) -> PortToken:
    """A short-lived token for one port, for a browser: open ``url`` (its query carries the
    token once; it is traded for a cookie valid for that port's paths only)."""
    token = await services.ports.token(user.id, body.port)
    return PortToken(
        token=token.token,
        port=body.port,
        url=browser_url(request, f"{port_url(body.port)}?{TOKEN_PARAM}={token.token}"),
        expires_at=datetime.fromtimestamp(token.expires_at, UTC),
    )


@router.post("/jupyter")
async def jupyter(request: Request, user: CurrentUser, services: ServicesDep) -> CellJupyter:
    """Start JupyterLab in your cell (full image) unless it runs; it is served through the
    relay, under ``/v1/cell/ports/absolute/8888/``."""
    base = await services.jupyter.start(user.id)
    token = await services.ports.token(user.id, JUPYTER_PORT)
    return CellJupyter(
        url=f"{base}lab",
        browser_url=browser_url(request, f"{base}lab?{TOKEN_PARAM}={token.token}"),
        expires_at=datetime.fromtimestamp(token.expires_at, UTC),
    )


async def relay_user(conn: HTTPConnection, port: int, services: Services) -> tuple[User, bool]:
    """Who calls, by API key, port token or port cookie; and whether by a token in the URL."""
    user, how = await browser_user(
        conn,
        (
            ("port token", our_token(conn)),
            ("port cookie", conn.cookies.get(COOKIE.format(port=port))),
        ),
        lambda token: services.ports.holder(token, port),
        f'POST /v1/cell/port-tokens {{"port": {port}}}',
    )
    return user, how == "port token"


def our_token(conn: HTTPConnection) -> str | None:
    """A port token in the query; another ``token`` parameter is the app's own."""
    token = conn.query_params.get(TOKEN_PARAM)
    return token if token is not None and relay.ours(TOKEN_PARAM, token) else None


def traded_for_cookie(request: Request, port: int, services: Services) -> Response:
    """The same URL without its token, and the port's cookie, so that the page's own links
    (relative, with no token) and later requests are authenticated."""
    token = our_token(request)
    owner = None if token is None else services.ports.tokens.owner_of(token, port)
    assert owner is not None  # relay_user checked it
    cookie = services.ports.cookie(owner, port)
    location = relay.target_of(request.url.path, request.url.query)
    response = RedirectResponse(location, status_code=303)
    response.set_cookie(
        COOKIE.format(port=port),
        cookie.token,
        max_age=int(cookie.expires_at - datetime.now(UTC).timestamp()),
        path=relay.PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        # Lax, not Strict: the page opens the preview origin from its own, another site, and
        # a Strict cookie would not come with that navigation's requests.
        samesite="lax",
    )
    return response


def upstream_target(conn: HTTPConnection, port: int, absolute: bool) -> tuple[str, str]:
    """The prefix the server in the cell is reached under, and the target it is sent (the
    path as the client encoded it, less the prefix unless ``absolute``)."""
    prefix = f"{relay.PREFIX}{'absolute/' if absolute else ''}{port}"
    path = (conn.scope.get("raw_path") or conn.url.path.encode()).decode("latin-1")
    return prefix, relay.target_of(path if absolute else path[len(prefix) :] or "/", conn.url.query)


async def relay_http(
    request: Request, port: int, absolute: bool, services: Services, send_timeout_s: float
) -> Response:
    user, by_url = await relay_user(request, port, services)
    if by_url and request.method in ("GET", "HEAD"):
        return traded_for_cookie(request, port, services)
    prefix, target = upstream_target(request, port, absolute)
    headers = relay.upstream_headers(request.headers.raw, prefix, request.url.scheme)
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    if has_body and "content-length" not in request.headers:
        headers.append((b"transfer-encoding", b"chunked"))
    head = h11.Request(method=request.method, target=target, headers=headers)
    # Without a body a request can be sent again: it may take a kept-alive connection, and is
    # sent on a new one if that one turns out closed.
    for reuse in (True, False) if not has_body else (False,):
        stack, stream = AsyncExitStack(), None
        try:
            stream = await stack.enter_async_context(
                services.ports.connect(user.id, port, reuse=reuse)
            )
            upstream = relay.Upstream(stream, port, stream.keep)
            await upstream.send(head)
            if has_body:
                sending = asyncio.ensure_future(upstream.send_body(request.stream()))
                stack.push_async_callback(_cancel, sending)
            else:
                await upstream.send(h11.EndOfMessage())
            answer = await upstream.response()
            break
        except (relay.RelayFailed, ConnectionError):
            await stack.aclose()
            if stream is None or not stream.reused:
                raise
        except BaseException:
            await stack.aclose()
            raise
    return await relayed(request, upstream, answer, stack, send_timeout_s)


async def relayed(
    request: Request,
    upstream: relay.Upstream,
    answer: h11.Response,
    stack: AsyncExitStack,
    send_timeout_s: float,
) -> Response:
    """The server's answer: whole when short, else streamed (the stack closes at its end)."""
    try:
        if request.method != "HEAD" and relay.small(answer):  # without a stream's costs
            async with stack:
                body = b"".join([chunk async for chunk in upstream.body()])
            if not upstream.complete:
                raise relay.RelayFailed(
                    f"the server on port {upstream.port} in the cell cut its answer short"
                )
            response = Response(body, answer.status_code)
            response.raw_headers = answer_headers(request, answer)
            return response
    except BaseException:
        await stack.aclose()
        raise
    streamed = TimedStreamingResponse(upstream.body(), send_timeout_s, None, on_close=stack.aclose)
    streamed.status_code = answer.status_code
    streamed.raw_headers = answer_headers(request, answer)
    return streamed


def answer_headers(request: Request, answer: h11.Response) -> relay.Headers:
    """The server's headers; sandboxed off the preview origin (api/origins.py says why)."""
    headers = relay.response_headers(answer)
    if not on_preview(request):
        headers.append((b"content-security-policy", SANDBOX.encode()))
    return headers


async def _cancel(task: asyncio.Future[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# The absolute routes first: "absolute" is no port.
@router.api_route("/ports/absolute/{port}/{path:path}", methods=METHODS, include_in_schema=False)
async def relay_absolute(
    port: str, request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    return await relay_http(
        request, parse_port(port), True, services, settings.stream_send_timeout_s
    )


async def relay_port(
    port: str, request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    """Relay the request to ``/{path}`` on the server listening on ``port`` in your cell,
    streamed both ways (WebSocket upgrades too). 502 ``port_closed`` when nothing listens
    there."""
    return await relay_http(
        request, parse_port(port), False, services, settings.stream_send_timeout_s
    )


for _method in METHODS:  # a route each: one operation per method in the API's schema
    router.add_api_route(
        "/ports/{port}/{path:path}",
        relay_port,
        methods=[_method],
        operation_id=f"relay_port_{_method.lower()}",
        summary=f"Relay {_method}",
    )


async def websocket_relay(websocket: WebSocket, port_text: str, absolute: bool) -> None:
    services: Services = websocket.app.state.services
    try:
        port = parse_port(port_text)
        user, _ = await relay_user(websocket, port, services)
        prefix, target = upstream_target(websocket, port, absolute)
        headers = relay.upstream_headers(websocket.headers.raw, prefix, websocket.url.scheme)
        host = websocket.headers.get("host", "localhost")
        async with services.ports.connect(user.id, port) as duplex:
            protocol, answer = await relay.open_websocket(
                duplex, host, target, headers, websocket.scope.get("subprotocols", [])
            )
            await websocket.accept(subprotocol=relay.chosen_subprotocol(answer))
            await relay.relay_websocket(websocket, protocol, duplex)
    except AgentcellError as exc:
        await refuse(websocket, exc)


@router.websocket("/ports/absolute/{port}/{path:path}")
async def relay_absolute_websocket(websocket: WebSocket, port: str) -> None:
    await websocket_relay(websocket, port, True)


@router.websocket("/ports/{port}/{path:path}")
async def relay_port_websocket(websocket: WebSocket, port: str) -> None:
    await websocket_relay(websocket, port, False)
