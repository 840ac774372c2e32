"""One JSON error shape for every failure: {"error": {"code", "message", "hint"}}."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from agentcell.errors import AgentcellError, ModelNotConfigured, RateLimited
from agentcell.schemas import ErrorResponse

log = logging.getLogger(__name__)

_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

# What the OpenAPI schema says every operation may answer (in place of FastAPI's own 422 shape).
RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "Refused; `error.code` says why"},
    "5XX": {"model": ErrorResponse, "description": "The server or the cell failed"},
}


def error_response(
    status: int, code: str, message: str, hint: str = "", headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "hint": hint}}
    sent = dict(headers or {})
    if status == 401:
        sent.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, headers=sent)


async def agentcell_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentcellError)
    if exc.status_code >= 500 and not isinstance(exc, ModelNotConfigured):  # said at start
        log.error("%s: %s", type(exc).__name__, exc)
    if isinstance(exc, RateLimited):
        return rate_limited_response(exc)
    return error_response(exc.status_code, exc.code, exc.message, exc.hint)


def rate_limited_response(exc: RateLimited) -> JSONResponse:
    retry_after = str(max(1, math.ceil(exc.retry_after_s)))
    return error_response(
        exc.status_code, exc.code, exc.message, exc.hint, {"Retry-After": retry_after}
    )


def _allowed_methods(request: Request) -> str:
    """The methods some route serves at this path (Starlette's ``Allow`` names one route's)."""
    routes = request.app.router.routes

    def served(method: str) -> bool:
        scope = {**request.scope, "method": method}
        scope.pop("route", None)
        scope.pop("fastapi", None)  # FastAPI keeps the matched route here
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    return ", ".join(m for m in _METHODS if served(m))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # RFC 9110: a 405 lists the methods the resource supports
        headers["Allow"] = _allowed_methods(request)
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


def _json_problem(error: Mapping[str, Any], doc: object) -> str:
    """FastAPI says ``19: JSON decode error``: say where, as line and column, in words."""
    pos = error["loc"][-1] if isinstance(error["loc"][-1], int) else 0
    text = doc if isinstance(doc, str) else ""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    reason = str(error.get("ctx", {}).get("error", "invalid JSON"))
    return f"the request body is not valid JSON: {reason} at line {line}, column {column}"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    decode = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if decode:
        return error_response(
            422,
            "invalid_request",
            _json_problem(decode[0], exc.body),
            'send one JSON object, e.g. {"code": "print(1)"}',
        )
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
        for e in exc.errors()
    )
    return error_response(
        422, "invalid_request", problems or "invalid request", "see /docs for the request schema"
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal", "internal error", "the server log has the details")


async def _client_gone(request: Request, _: Exception) -> Response:
    """The client left mid-body (or was cut off for sending too slowly): nobody to answer."""
    log.info("client went away while sending %s %s", request.method, request.url.path)
    return Response(status_code=499)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(AgentcellError, agentcell_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
