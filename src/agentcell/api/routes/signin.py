"""The web page's sign-in (DESIGN §12): ``POST /v1/session`` trades an API key (or the admin
token) for an HttpOnly, SameSite=Strict cookie and a CSRF token; ``DELETE`` signs out. And the
rotation of keys: a user's own, any user's by the admin, and the admin token."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from agentcell.api.auth import rotate_admin_token
from agentcell.api.deps import (
    SESSION_COOKIE,
    AdminOnly,
    CurrentUser,
    PrincipalDep,
    ServicesDep,
    SettingsDep,
    principal_of_key,
    signed_in,
)
from agentcell.api.origins import on_preview, page_origin
from agentcell.api.schemas import SignIn
from agentcell.errors import InvalidRequest
from agentcell.schemas import Me, NewKey, SessionInfo
from agentcell.services.websessions import SignedIn

router = APIRouter(prefix="/v1", tags=["sign-in"])


def _me(signed: SignedIn) -> Me:
    if signed.user is None:
        return Me(id="admin", name="admin", admin=True)
    return Me.model_validate(signed.user, from_attributes=True)


def _info(signed: SignedIn) -> SessionInfo:
    expires = datetime.fromtimestamp(signed.expires_at, UTC)
    return SessionInfo(me=_me(signed), csrf_token=signed.csrf_token, expires_at=expires)


@router.post("/session")
async def sign_in(
    body: SignIn, request: Request, response: Response, services: ServicesDep
) -> SessionInfo:
    """Sign a browser in: the key is checked once and never kept; the answer's ``csrf_token``
    goes in the X-CSRF-Token header of every change the page makes."""
    if on_preview(request):
        where = page_origin(request)
        raise InvalidRequest(
            "this address is for pages served from cells, not for signing in",
            hint=f"open the web page at {where}" if where else "open the web page's address",
        )
    principal = await principal_of_key(request, services, body.api_key.strip(), from_header=False)
    token, signed = await services.web.sign_in(principal.user)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(services.web.ttl_s),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    await services.audit.record(principal.user.id if principal.user else "admin", "signin")
    return _info(signed)


@router.get("/session")
async def session(request: Request, services: ServicesDep) -> SessionInfo:
    """Who the cookie signs in, and the session's CSRF token (after a reload of the page)."""
    _, signed = await signed_in(request, services)
    return _info(signed)


@router.delete("/session", status_code=204)
async def sign_out(principal: PrincipalDep, services: ServicesDep) -> Response:
    """End this browser's session (its cookie is cleared)."""
    if not principal.session:
        raise InvalidRequest("an API key signs nothing out", hint="this is for the web page")
    await services.web.sign_out(principal.session)
    await services.audit.record(principal.user.id if principal.user else "admin", "signout")
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/me/key")
async def rotate_my_key(
    user: CurrentUser, principal: PrincipalDep, services: ServicesDep
) -> NewKey:
    """A new API key for you, shown once: the old one stops working, and so do your other
    sign-ins."""
    key = await services.users.rotate_key(user.id, keep_session=principal.session)
    return NewKey(api_key=key)


@router.post("/users/{user_id}/key", dependencies=[AdminOnly])
async def rotate_key(user_id: str, services: ServicesDep) -> NewKey:
    """A new API key for the user, shown once; their old key and sign-ins stop working."""
    return NewKey(api_key=await services.users.rotate_key(user_id))


@router.post("/admin/token", dependencies=[AdminOnly])
async def rotate_admin(
    request: Request, principal: PrincipalDep, services: ServicesDep, settings: SettingsDep
) -> NewKey:
    """A new admin token, shown once (also written to the data dir's admin_token file); the old
    one and the admin's other sign-ins stop working."""
    token = rotate_admin_token(settings)
    request.app.state.admin_token = token
    await services.web.end_all(None, keep=principal.session)
    await services.audit.record("admin", "admin.token")
    return NewKey(api_key=token)
