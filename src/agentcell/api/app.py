"""``create_app(settings)``: the lifespan builds the store, the cells (a ``CellService``) and the
services over them (``app.state.services``, what the routes call)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentcell import __version__
from agentcell.api import errors, mcp
from agentcell.api.auth import ensure_admin_token
from agentcell.api.fastexec import FastExec
from agentcell.api.gate import RateGate
from agentcell.api.metrics import Metrics, MetricsMiddleware
from agentcell.api.routes import (
    audit,
    cell,
    desktop,
    files,
    jobs,
    network,
    ops,
    page,
    ports,
    schedules,
    secrets,
    sessions,
    signin,
    terminals,
    users,
)
from agentcell.api.security import SecurityHeaders
from agentcell.api.streams import BodyTimeout
from agentcell.config import Settings
from agentcell.egress.build import build_gateway
from agentcell.sandbox.local import LocalCells
from agentcell.services import Services
from agentcell.services.limits import Limits
from agentcell.store import Store
from agentcell.store.placements import Placements

log = logging.getLogger(__name__)

UPLOAD_PATH = "/v1/files/raw"
RELAY_PATHS = "/v1/cell/ports/"  # bodies of any type and size, streamed to a server in the cell


def raw_body(path: str) -> bool:
    """A body that is not a JSON request of ours: an upload, or relayed to a cell."""
    return path in (UPLOAD_PATH, "/v1/files/extract") or path.startswith(RELAY_PATHS)


BODY_SLACK = 64 * 1024  # JSON around the code


class BodyLimit:
    """Refuse oversized request bodies before anything parses them: by Content-Length when
    sent, else by reading at most ``limit`` bytes of a chunked body. Uploads have their own
    (larger) limit, enforced by their route as the body streams."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or raw_body(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await self.app(scope, receive, send)  # the server rejects a malformed length itself
            return
        if declared is not None and int(declared) <= self.limit:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0 if declared is None else int(declared)
        while declared is None and size <= self.limit:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if size > self.limit:
            response = errors.error_response(
                413,
                "too_large",
                f"request bodies are limited to {self.limit} bytes",
                "write large programs to a file in the workspace and run the file",
            )
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class JsonBodies:
    """Every request body but an upload is JSON here, whatever its Content-Type says: `curl -d`
    labels its data as a form, and the README's curl example should just work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("POST", "PUT", "PATCH")
            and not raw_body(scope["path"])
        ):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            # In place: the router records the matched route on this very scope, and the
            # metrics middleware outside reads it from there.
            scope["headers"] = [*headers, (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.admin_token, _ = ensure_admin_token(settings)
        factory = getattr(app.state, "model_factory", None)
        async with await Store.from_settings(settings) as store:
            placements = Placements(store.engine, node=settings.instance)
            await placements.import_file(settings.data_dir / "cells.json")  # before reconciling
            gateway = build_gateway(settings, store, getattr(app.state, "test_internet", None))
            cells = LocalCells.from_settings(
                settings, exec_audit=store, placements=placements, egress=gateway
            )
            async with cells:  # every exec audited; owners' cells placed in the store
                observe = app.state.metrics.observe_exec
                services = Services(
                    settings,
                    store,
                    cells,
                    gateway,
                    app.state.limits,
                    observe,
                    factory,
                    app.state.metrics,
                )
                async with services, app.state.mcp.run():  # the MCP server's sessions
                    app.state.services = services
                    image = (await cells.profile()).image
                    log.info("agentcell %s ready; cells run %s", __version__, image)
                    gc.freeze()  # start-up objects (modules, schemas) leave the collector's scans
                    yield

    app = FastAPI(
        title="agentcell",
        version=__version__,
        summary="A private, persistent, hardened sandbox per user, driven by an agent.",
        lifespan=lifespan,
        responses=errors.RESPONSES,
        docs_url=None,  # served offline by routes/page.py
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.limits = Limits.from_settings(settings)
    app.state.metrics = Metrics()
    errors.install(app)
    routers = (
        signin,
        users,
        cell,
        ports,
        terminals,
        desktop,
        network,
        secrets,
        files,
        sessions,
        jobs,
        schedules,
        audit,
        ops,
        page,
    )
    for module in routers:
        app.include_router(module.router)
    novnc = StaticFiles(directory=settings.web_dir / desktop.NOVNC, check_dir=False)
    app.mount(desktop.PREFIX + "novnc", novnc, name="novnc")  # the desktop viewer's RFB client
    app.mount("/static", page.static_files(), name="static")  # the web page's own files
    app.state.mcp = mcp.endpoint()
    app.add_route(mcp.PATH, app.state.mcp.door, include_in_schema=False)  # MCP over HTTP
    app.add_middleware(FastExec)  # innermost: inside every middleware of ours, as a route is
    app.add_middleware(SecurityHeaders)
    app.add_middleware(JsonBodies)
    app.add_middleware(BodyLimit, limit=settings.max_code_bytes + BODY_SLACK)
    app.add_middleware(
        BodyTimeout, idle_s=settings.body_timeout_s, min_rate=settings.body_min_rate_bytes_s
    )
    app.add_middleware(RateGate, limits=app.state.limits)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
