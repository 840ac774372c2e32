"""Operations: health, Prometheus metrics, and the admin's view of cells."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentcell import __version__
from agentcell.api.deps import AdminOnly, CellsDep, MetricsDep, StoreDep
from agentcell.api.schemas import AdminCell, Health, ReapResult
from agentcell.errors import AgentcellError

router = APIRouter(tags=["ops"])


@router.get("/healthz", responses={503: {"model": Health, "description": "Degraded"}})
async def healthz(cells: CellsDep, store: StoreDep, response: Response) -> Health:
    database_ok = False
    cell_health = await cells.health()
    docker_ok = cell_health.backend
    with contextlib.suppress(AgentcellError):
        await store.ping()
        database_ok = True
    ok = docker_ok and database_ok
    if not ok:
        response.status_code = 503
    return Health(
        status="ok" if ok else "degraded",
        docker=docker_ok,
        database=database_ok,
        version=__version__,
        workspace_quota=cell_health.storage_quota,
    )


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep, cells: CellsDep) -> Response:
    await metrics.read_cells(cells)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/admin/cells", dependencies=[AdminOnly], tags=["admin"])
async def admin_cells(cells: CellsDep) -> list[AdminCell]:
    return [
        AdminCell(
            owner=c.owner,
            cell_id=c.cell_id,
            container_id=c.container_id,
            state=c.state.value if c.owner else "pooled",
            active=c.active,
            created_at=datetime.fromtimestamp(c.created_at, UTC),
            last_active_at=datetime.fromtimestamp(c.last_active_at, UTC),
        )
        for c in await cells.overview()
    ]


@router.post("/v1/admin/cells/reap", dependencies=[AdminOnly], tags=["admin"])
async def admin_reap(cells: CellsDep) -> ReapResult:
    """Apply the idle tiers now (the server also does this every ``reap_interval_s``)."""
    report = await cells.reap()
    return ReapResult(
        paused=report.paused, stopped=report.stopped, removed=report.removed, died=report.died
    )
