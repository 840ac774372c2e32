"""One JSON error shape for every failure: {"error": {"code", "message", "hint"}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentcell.errors import AgentcellError

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


def error_response(status: int, code: str, message: str, hint: str = "") -> JSONResponse:
    body = {"error": {"code": code, "message": message, "hint": hint}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _agentcell_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentcellError)
    if exc.status_code >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    return error_response(exc.status_code, exc.code, exc.message, exc.hint)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
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


def install(app: FastAPI) -> None:
    app.add_exception_handler(AgentcellError, _agentcell_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
