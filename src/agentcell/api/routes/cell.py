"""The caller's own cell: status, exec (JSON or SSE), restart, delete."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from agentcell.api.deps import (
    CellsDep,
    CurrentUser,
    LimitsDep,
    MetricsDep,
    SettingsDep,
    StoreDep,
)
from agentcell.api.metrics import Metrics
from agentcell.api.schemas import (
    CellProcess,
    CellPublic,
    ExecRequest,
    ExecResponse,
    ExitEvent,
    Limits,
)
from agentcell.api.streams import CLIENT_CLOSED, TimedStreamingResponse, unless_disconnected
from agentcell.config import Settings
from agentcell.errors import AgentcellError, PayloadTooLarge
from agentcell.executor.protocol import Exit
from agentcell.sandbox.service import CellHandle, CellService

router = APIRouter(prefix="/v1/cell", tags=["cell"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _time(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None


async def cell_public(cells: CellService, owner: str) -> CellPublic:
    profile = await cells.profile()
    lim = profile.limits
    cell = await cells.status(owner)
    return CellPublic(
        state=cell.state.value if cell else "none",
        image=profile.image,
        limits=Limits(
            memory_mb=lim.memory_mb,
            cpus=lim.cpus,
            pids=lim.pids,
            tmp_mb=lim.tmp_mb,
            workspace_mb=lim.workspace_mb,
        ),
        network=profile.network,
        created_at=_time(cell.created_at) if cell else None,
        last_active_at=_time(cell.last_active_at) if cell else None,
    )


@router.get("")
async def get_cell(user: CurrentUser, cells: CellsDep) -> CellPublic:
    return await cell_public(cells, user.id)


def _check_size(body: ExecRequest, settings: Settings) -> None:
    size = len(body.code.encode())
    if size > settings.max_code_bytes:
        raise PayloadTooLarge(
            f"code is {size} bytes; the limit is {settings.max_code_bytes}",
            hint="write large programs to a file in the workspace and run the file",
        )


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class ExecLog:
    """Records one exec in the metrics. (The cell audits every exec: ``sandbox.audit``.)"""

    metrics: Metrics
    body: ExecRequest

    async def done(self, exit_code: int | None, duration_ms: float, error: str = "") -> None:
        ok = exit_code == 0 and not error
        self.metrics.observe_exec(self.body.language, ok, duration_ms)


async def _event_stream(
    cell: CellHandle, body: ExecRequest, log: ExecLog
) -> AsyncGenerator[bytes, None]:
    started = time.perf_counter()
    logged = False
    try:
        async for event in cell.stream(
            body.code,
            body.language,
            context=body.context,
            timeout_s=body.timeout_s,
            background=body.background,
        ):
            if isinstance(event, Exit):
                # Recorded before the last event goes out: a client may hang up right after it.
                await log.done(event.exit_code, (time.perf_counter() - started) * 1000)
                logged = True
                exit_event = ExitEvent.model_validate(event, from_attributes=True)
                yield sse("exit", exit_event.model_dump())
            else:
                yield sse(event.stream, {"data": event.data})
    except AgentcellError as exc:
        await log.done(None, (time.perf_counter() - started) * 1000, f"{exc.code}: {exc.message}")
        logged = True
        yield sse("error", {"code": exc.code, "message": exc.message, "hint": exc.hint})
    finally:
        if not logged:  # the client went away mid-stream, which stopped the code
            await log.done(None, (time.perf_counter() - started) * 1000, "stream closed by client")


@router.post(
    "/exec",
    response_model=ExecResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE"}},
)
async def exec_code(
    body: ExecRequest,
    request: Request,
    user: CurrentUser,
    cells: CellsDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    limits: LimitsDep,
) -> ExecResponse | Response:
    """Run code in the caller's cell. ``Accept: text/event-stream`` streams
    ``stdout``/``stderr`` events, then ``exit`` (or ``error``)."""
    _check_size(body, settings)
    log = ExecLog(metrics, body)
    if "text/event-stream" not in request.headers.get("accept", ""):
        with limits.running.hold(user.id):
            await cells.ensure(user.id)  # started before the exec, whether the client stays
            cell = CellHandle(cells, user.id)
            return await _exec_json(request, cell, body, log, settings.json_output_limit_bytes)
    limits.running.acquire(user.id)  # held until the stream ends
    try:
        await cells.ensure(user.id)  # failing to start it is an HTTP error, not an SSE event
        cell = CellHandle(cells, user.id)
    except BaseException:
        limits.running.release(user.id)
        raise

    async def release() -> None:
        limits.running.release(user.id)

    return TimedStreamingResponse(
        _event_stream(cell, body, log),
        settings.stream_send_timeout_s,
        "text/event-stream",
        SSE_HEADERS,
        on_close=release,
    )


async def _exec_json(
    request: Request, cell: CellHandle, body: ExecRequest, log: ExecLog, output_limit: int
) -> ExecResponse | Response:
    """The exec answered as one JSON body, with the lower JSON output limit (the server holds
    it whole). A client that hangs up stops the code, as a closed stream does."""
    started = time.perf_counter()
    run = cell.exec(
        body.code,
        body.language,
        context=body.context,
        timeout_s=body.timeout_s,
        output_limit=output_limit,
        background=body.background,
    )
    try:
        result = await unless_disconnected(request, run)
    except AgentcellError as exc:
        await log.done(None, (time.perf_counter() - started) * 1000, f"{exc.code}: {exc.message}")
        raise
    if result is None:
        await log.done(None, (time.perf_counter() - started) * 1000, "client hung up")
        return Response(status_code=CLIENT_CLOSED)  # nobody reads it; the metrics do
    await log.done(result.exit_code, result.duration_ms)
    return ExecResponse.model_validate(result, from_attributes=True)


@router.get("/processes")
async def list_processes(user: CurrentUser, cells: CellsDep) -> list[CellProcess]:
    """The processes that background execs (``background: true``) kept running in your cell."""
    processes = await cells.processes(user.id)
    return [CellProcess.model_validate(p, from_attributes=True) for p in processes]


@router.delete("/processes/{pid}", status_code=204)
async def kill_process(pid: int, user: CurrentUser, cells: CellsDep, store: StoreDep) -> Response:
    """Kill a process a background exec kept, and everything it started."""
    await cells.kill_process(user.id, pid)
    await store.record(user.id, "process.kill", target=str(pid))
    return Response(status_code=204)


@router.post("/restart")
async def restart_cell(
    user: CurrentUser, cells: CellsDep, store: StoreDep, limits: LimitsDep
) -> CellPublic:
    limits.lifecycle.take(user.id)
    await cells.restart(user.id)
    await store.record(user.id, "cell.restart")
    return await cell_public(cells, user.id)


@router.delete("", status_code=204)
async def delete_cell(
    user: CurrentUser, cells: CellsDep, store: StoreDep, limits: LimitsDep
) -> Response:
    """Remove the container; the workspace is kept."""
    limits.lifecycle.take(user.id)
    await cells.remove(user.id)
    await store.record(user.id, "cell.delete")
    return Response(status_code=204)
