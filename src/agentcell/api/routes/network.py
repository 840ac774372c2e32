"""Egress (``services.network``): your cell's network policy, and the admin's rules around it."""

from __future__ import annotations

from fastapi import APIRouter

from agentcell.api.deps import AdminOnly, CurrentUser, ServicesDep
from agentcell.schemas import AdminNetwork, CellNetwork, NetworkPolicy

router = APIRouter(tags=["network"])


@router.get("/v1/cell/network")
async def get_network(user: CurrentUser, services: ServicesDep) -> CellNetwork:
    """What your cell may reach now: your own policy, or the admin's default."""
    return await services.network.policy(user.id)


@router.put("/v1/cell/network")
async def put_network(
    policy: NetworkPolicy, user: CurrentUser, services: ServicesDep
) -> CellNetwork:
    """Your own policy, within the admin's ceiling; it applies to the next connection."""
    return await services.network.set_policy(user.id, policy)


@router.delete("/v1/cell/network")
async def reset_network(user: CurrentUser, services: ServicesDep) -> CellNetwork:
    """Back to the admin's default policy."""
    return await services.network.set_policy(user.id, None)


@router.get("/v1/admin/network", dependencies=[AdminOnly], tags=["admin"])
async def get_admin_network(services: ServicesDep) -> AdminNetwork:
    return await services.network.admin_network()


@router.put("/v1/admin/network", dependencies=[AdminOnly], tags=["admin"])
async def put_admin_network(network: AdminNetwork, services: ServicesDep) -> AdminNetwork:
    """The default policy, the ceiling of users' own and the extra ports; kept in the store
    (over the settings) and applied to the next connection of every cell."""
    return await services.network.set_admin_network(network)
