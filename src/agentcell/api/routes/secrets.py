"""Secrets (``services.network``): values the egress proxy puts into requests to the hosts each
may go to; the cell holds a placeholder in the env var of the secret's name. Values are never
answered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from agentcell.api.deps import CurrentUser, ServicesDep
from agentcell.api.schemas import SecretPut
from agentcell.schemas import SECRET_NAME, SecretList, SecretPublic

router = APIRouter(prefix="/v1/secrets", tags=["network"])
SecretName = Annotated[str, Path(pattern=SECRET_NAME, examples=["GITHUB_TOKEN"])]


@router.get("")
async def list_secrets(user: CurrentUser, services: ServicesDep) -> SecretList:
    """Your secrets' names and hosts (never their values)."""
    return SecretList(secrets=await services.network.secrets(user.id))


@router.put("/{name}")
async def put_secret(
    name: SecretName, body: SecretPut, user: CurrentUser, services: ServicesDep
) -> SecretPublic:
    """Store or replace a secret; new execs and jobs see its placeholder as ``$name``."""
    return await services.network.put_secret(user.id, name, body.value, body.hosts)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_secret(name: SecretName, user: CurrentUser, services: ServicesDep) -> Response:
    await services.network.delete_secret(user.id, name)
    return Response(status_code=204)
