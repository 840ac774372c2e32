"""Users and their API keys (admin), and ``/v1/me``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from agentcell.api.deps import AdminOnly, PrincipalDep, ServicesDep
from agentcell.api.schemas import UserCreate
from agentcell.schemas import Me, UserCreated, UserPublic

router = APIRouter(prefix="/v1", tags=["users"])


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminOnly],
    response_model=UserCreated,
)
async def create_user(body: UserCreate, services: ServicesDep) -> UserCreated:
    user, key = await services.users.create(body.name)
    public = UserPublic.model_validate(user, from_attributes=True)
    return UserCreated(**public.model_dump(), api_key=key)


@router.get("/users", dependencies=[AdminOnly])
async def list_users(services: ServicesDep) -> list[UserPublic]:
    users = await services.users.list_users()
    return [UserPublic.model_validate(u, from_attributes=True) for u in users]


@router.delete("/users/{user_id}", status_code=204, dependencies=[AdminOnly])
async def delete_user(
    user_id: str, services: ServicesDep, delete_workspace: bool = False
) -> Response:
    """Remove a user and their cell; their workspace only with ``delete_workspace=true``."""
    await services.users.delete(user_id, delete_workspace=delete_workspace)
    return Response(status_code=204)


@router.get("/me")
async def me(principal: PrincipalDep) -> Me:
    if principal.user is None:
        return Me(id="admin", name="admin", admin=True)
    return Me.model_validate(principal.user, from_attributes=True)
