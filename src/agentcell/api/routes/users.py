"""Users and their API keys (admin), and ``/v1/me``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from agentcell.api.deps import AdminOnly, CellsDep, PrincipalDep, StoreDep
from agentcell.api.schemas import UserCreate
from agentcell.errors import NotFound
from agentcell.schemas import Me, UserCreated, UserPublic

router = APIRouter(prefix="/v1", tags=["users"])


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminOnly],
    response_model=UserCreated,
)
async def create_user(body: UserCreate, store: StoreDep) -> UserCreated:
    user, key = await store.create_user(body.name)
    await store.record(user.id, "user.create", target=user.name)
    public = UserPublic.model_validate(user, from_attributes=True)
    return UserCreated(**public.model_dump(), api_key=key)


@router.get("/users", dependencies=[AdminOnly])
async def list_users(store: StoreDep) -> list[UserPublic]:
    return [UserPublic.model_validate(u, from_attributes=True) for u in await store.list_users()]


@router.delete("/users/{user_id}", status_code=204, dependencies=[AdminOnly])
async def delete_user(
    request: Request, user_id: str, store: StoreDep, cells: CellsDep, delete_workspace: bool = False
) -> Response:
    """Remove a user and their cell; their workspace only with ``delete_workspace=true``."""
    if await store.get_user(user_id) is None:
        raise NotFound(f"no user {user_id!r}")
    request.app.state.keys.forget(user_id)
    await cells.remove(user_id, delete_workspace=delete_workspace)
    await store.delete_user(user_id)
    await store.record(user_id, "user.delete", detail=f"delete_workspace={delete_workspace}")
    return Response(status_code=204)


@router.get("/me")
async def me(principal: PrincipalDep) -> Me:
    if principal.user is None:
        return Me(id="admin", name="admin", admin=True)
    return Me.model_validate(principal.user, from_attributes=True)
