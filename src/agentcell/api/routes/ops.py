"""Operations: health, Prometheus metrics, and the admin's view of cells."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentcell import __version__
from agentcell.api.deps import AdminOnly, MetricsDep, ServicesDep
from agentcell.schemas import AdminCell, AdminCellState, Health, ReapResult

router = APIRouter(tags=["ops"])


@router.get("/healthz", responses={503: {"model": Health, "description": "Degraded"}})
async def healthz(services: ServicesDep, response: Response) -> Health:
    health = await services.cells.health()
    if not health.ok:
        response.status_code = 503
    return Health(
        status="ok" if health.ok else "degraded",
        docker=health.docker,
        database=health.database,
        version=__version__,
        workspace_quota=health.workspace_quota,
    )


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep, services: ServicesDep) -> Response:
    await metrics.read_cells(services.cells.service)
    metrics.read_jobs(await services.jobs.by_state())
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/admin/cells", dependencies=[AdminOnly], tags=["admin"])
async def admin_cells(services: ServicesDep) -> list[AdminCell]:
    return [
        AdminCell(
            owner=c.owner,
            cell_id=c.cell_id,
            container_id=c.container_id,
            state=c.state.value if c.owner else "pooled",
            active=c.active,
            created_at=datetime.fromtimestamp(c.created_at, UTC),
            last_active_at=datetime.fromtimestamp(c.last_active_at, UTC),
            memory_bytes=c.memory_bytes,
        )
        for c in await services.cells.every_cell()
    ]


@router.post("/v1/admin/cells/{user_id}/pause", dependencies=[AdminOnly], tags=["admin"])
async def admin_pause(user_id: str, services: ServicesDep) -> AdminCellState:
    """Pause the owner's idle cell now (its memory kept); their next call thaws it."""
    state = await services.cells.put_down(user_id, "pause")
    return AdminCellState(owner=user_id, state=state.value)


@router.post("/v1/admin/cells/{user_id}/stop", dependencies=[AdminOnly], tags=["admin"])
async def admin_stop(user_id: str, services: ServicesDep) -> AdminCellState:
    """Stop the owner's idle cell now; their next call starts it again."""
    state = await services.cells.put_down(user_id, "stop")
    return AdminCellState(owner=user_id, state=state.value)


@router.post("/v1/admin/cells/{user_id}/remove", dependencies=[AdminOnly], tags=["admin"])
async def admin_remove(user_id: str, services: ServicesDep) -> AdminCellState:
    """Remove the owner's idle cell now; the workspace is kept for their next call's cell."""
    state = await services.cells.put_down(user_id, "remove")
    return AdminCellState(owner=user_id, state=state.value)


@router.post("/v1/admin/cells/reap", dependencies=[AdminOnly], tags=["admin"])
async def admin_reap(services: ServicesDep) -> ReapResult:
    """Apply the idle tiers now (the server also does this every ``reap_interval_s``)."""
    report = await services.cells.reap()
    return ReapResult(
        paused=report.paused, stopped=report.stopped, removed=report.removed, died=report.died
    )
