"""FastAPI dependencies as Annotated aliases: who is calling, and what app.state holds (the
services, the settings, the metrics)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from agentcell.api.gate import GATED
from agentcell.api.metrics import Metrics
from agentcell.api.origins import on_preview
from agentcell.config import Settings
from agentcell.errors import CsrfFailed, Forbidden, Unauthorized
from agentcell.services import Services
from agentcell.services.websessions import SignedIn
from agentcell.store.models import User

SESSION_COOKIE = "agentcell_session"  # the web page's sign-in (the relay never forwards it)
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    session: str = ""  # the web session's token, when the cookie said who calls

    @property
    def admin(self) -> bool:
        return self.user is None


def is_admin_token(request: HTTPConnection, token: str) -> bool:
    return hmac.compare_digest(token.encode(), request.app.state.admin_token.encode())


async def principal_of_key(
    request: HTTPConnection, services: Services, key: str, *, from_header: bool = True
) -> Principal:
    """Who an API key or the admin token is; the user's request is counted against their rate.
    A key not ``from_header`` (sign-in's, in the body) is not the one the gate looked at."""
    if is_admin_token(request, key):
        return Principal(user=None)
    # The Authorization header's user, known and limited already (api/gate.py).
    gated: User | None = getattr(request.state, GATED, None) if from_header else None
    user = gated or await services.users.authenticate(key)
    if user is None:
        raise Unauthorized(
            "the token sent is neither a valid API key nor the admin token",
            hint="a user sends the API key that 'agentcell users add' printed (the admin can "
            "make a new one); the admin sends the token in the data dir's admin_token file",
        )
    if gated is None:  # the gate has not limited it (api/gate.py)
        request.app.state.limits.requests.take(user.id)  # the admin is not rate-limited
    return Principal(user=user)


async def signed_in(request: HTTPConnection, services: Services) -> tuple[str, SignedIn]:
    """The session the cookie names, and its token; refused on the preview origin."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or on_preview(request):
        raise Unauthorized(
            "no API key was sent",
            hint="send the header 'Authorization: Bearer <your API key>', or sign in on the "
            "web page",
        )
    session = await services.web.resolve(token)
    if session is None:
        raise Unauthorized("your sign-in has ended or expired", hint="sign in again")
    return token, session


async def _principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is not None:
        return await principal_of_key(request, services, credentials.credentials)
    token, session = await signed_in(request, services)
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, "").encode(), session.csrf_token.encode()
    ):
        raise CsrfFailed(
            f"a change made with the web page's sign-in must send its {CSRF_HEADER} header",
            hint="reload the page; a script calling the API sends its API key instead",
        )
    if session.user is not None:
        request.app.state.limits.requests.take(session.user.id)
    return Principal(user=session.user, session=token)


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
