"""The caller's own cell: status, exec (JSON or SSE), restart, delete."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import APIRouter, Request, Response

from agentcell.api.deps import CurrentUser, ServicesDep, SettingsDep
from agentcell.api.fastexec import exec_as_json
from agentcell.api.schemas import ExecRequest
from agentcell.api.sse import SSE_HEADERS, sse
from agentcell.api.streams import CLIENT_CLOSED, TimedStreamingResponse
from agentcell.errors import AgentcellError
from agentcell.executor.protocol import Exit, Output
from agentcell.schemas import CellProcess, CellPublic, ExecResponse, ExitEvent, Limits
from agentcell.services.cells import CellStatus
from agentcell.services.exec import ExecCall

router = APIRouter(prefix="/v1/cell", tags=["cell"])


def cell_public(status: CellStatus) -> CellPublic:
    lim = status.limits
    return CellPublic(
        state=status.state,
        image=status.image,
        limits=Limits(
            memory_mb=lim.memory_mb,
            cpus=lim.cpus,
            pids=lim.pids,
            tmp_mb=lim.tmp_mb,
            workspace_mb=lim.workspace_mb,
        ),
        network=status.network,
        created_at=status.created_at,
        last_active_at=status.last_active_at,
        memory_bytes=status.memory_bytes,
        workspace_bytes=status.workspace_bytes,
    )


@router.get("")
async def get_cell(user: CurrentUser, services: ServicesDep) -> CellPublic:
    return cell_public(await services.cells.status(user.id))


async def _event_stream(events: AsyncGenerator[Output | Exit, None]) -> AsyncGenerator[bytes, None]:
    try:
        async for event in events:
            if isinstance(event, Exit):
                exit_event = ExitEvent.model_validate(event, from_attributes=True)
                yield sse("exit", exit_event.model_dump())
            else:
                yield sse(event.stream, {"data": event.data})
    except AgentcellError as exc:
        yield sse("error", {"code": exc.code, "message": exc.message, "hint": exc.hint})


@router.post(
    "/exec",
    response_model=ExecResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE"}},
)
async def exec_code(
    body: ExecRequest,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    settings: SettingsDep,
) -> ExecResponse | Response:
    """Run code in the caller's cell. ``Accept: text/event-stream`` streams
    ``stdout``/``stderr`` events, then ``exit`` (or ``error``)."""
    call = ExecCall(**body.model_dump())
    if "text/event-stream" not in request.headers.get("accept", ""):
        answer = await exec_as_json(request, services, user.id, call)
        if answer is None:
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it; the metrics do
        return answer
    stream = await services.execs.stream(user.id, call)
    return TimedStreamingResponse(
        _event_stream(stream.items),
        settings.stream_send_timeout_s,
        "text/event-stream",
        SSE_HEADERS,
        on_close=stream.close,
    )


@router.get("/processes")
async def list_processes(user: CurrentUser, services: ServicesDep) -> list[CellProcess]:
    """The processes that background execs (``background: true``) kept running in your cell."""
    processes = await services.cells.processes(user.id)
    return [CellProcess.model_validate(p, from_attributes=True) for p in processes]


@router.delete("/processes/{pid}", status_code=204)
async def kill_process(pid: int, user: CurrentUser, services: ServicesDep) -> Response:
    """Kill a process a background exec kept, and everything it started."""
    await services.cells.kill_process(user.id, pid)
    return Response(status_code=204)


@router.post("/restart")
async def restart_cell(user: CurrentUser, services: ServicesDep) -> CellPublic:
    return cell_public(await services.cells.restart(user.id))


@router.delete("", status_code=204)
async def delete_cell(user: CurrentUser, services: ServicesDep) -> Response:
    """Remove the container; the workspace is kept."""
    await services.cells.remove(user.id)
    return Response(status_code=204)
