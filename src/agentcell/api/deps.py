"""FastAPI dependencies as Annotated aliases: who is calling, and what app.state holds (the
services, the settings, the metrics)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentcell.api.gate import GATED
from agentcell.api.metrics import Metrics
from agentcell.config import Settings
from agentcell.errors import Forbidden, Unauthorized
from agentcell.services import Services
from agentcell.store.models import User


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
ServicesDep = Annotated[Services, Depends(_services)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]

_bearer = HTTPBearer(auto_error=False, description="a user's API key, or the admin token")


@dataclass(frozen=True)
class Principal:
    user: User | None  # None for the admin

    @property
    def admin(self) -> bool:
        return self.user is None


async def _principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("no API key was sent")
    token = credentials.credentials
    if hmac.compare_digest(token.encode(), request.app.state.admin_token.encode()):
        return Principal(user=None)
    gated: User | None = getattr(request.state, GATED, None)  # known and limited already
    user = gated or await services.users.authenticate(token)
    if user is None:
        raise Unauthorized(
            "the token sent is neither a valid API key nor the admin token",
            hint="a user sends the API key that 'agentcell users add' printed (the admin can "
            "make a new one); the admin sends the token in the data dir's admin_token file",
        )
    if gated is None:  # the gate has not limited it (api/gate.py)
        request.app.state.limits.requests.take(user.id)  # the admin is not rate-limited
    return Principal(user=user)


PrincipalDep = Annotated[Principal, Depends(_principal)]


async def _current_user(principal: PrincipalDep) -> User:
    if principal.user is None:
        raise Forbidden("the admin token has no cell", hint="use a user's API key for this")
    return principal.user


async def _admin(principal: PrincipalDep) -> None:
    if not principal.admin:
        raise Forbidden("only the admin may do this", hint="send the admin token")


CurrentUser = Annotated[User, Depends(_current_user)]
AdminOnly = Depends(_admin)
