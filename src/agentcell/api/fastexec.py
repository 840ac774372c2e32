"""The hot path, ``POST /v1/cell/exec`` answered as JSON, without the framework's per-request
work (routing over every route, dependency solving, validating the answer twice): for a warm
exec that work was as long as the exec itself. It answers exactly as the route in
``routes/cell.py`` does, which stays the contract (OpenAPI) and takes every other case: a key
the gate has not seen yet, the web page's cookie, the admin, SSE, a body that fails validation
(so its 422 is the framework's own). Everything outside (metrics, the rate gate, body limits,
security headers, the error handler of last resort) applies as to any route.
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentcell.api.errors import agentcell_error
from agentcell.api.gate import GATED
from agentcell.api.schemas import ExecRequest
from agentcell.api.streams import CLIENT_CLOSED, unless_disconnected
from agentcell.errors import AgentcellError
from agentcell.schemas import ExecResponse
from agentcell.services import Services
from agentcell.services.exec import ExecCall
from agentcell.store.models import User

PATH = "/v1/cell/exec"


class _Route:
    path = PATH


ROUTE = _Route()


class FastExec:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.answered = 0  # requests this path answered itself (the rest went to the route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user: User | None = scope.get("state", {}).get(GATED)
        if (
            user is None
            or scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or _wants_stream(scope)
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect":
                await Response(status_code=CLIENT_CLOSED)(scope, receive, send)  # nobody reads
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            call = ExecCall(**ExecRequest.model_validate_json(body).model_dump())
        except ValidationError:  # the route says what is wrong, in its words

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        scope["route"] = ROUTE  # what the metrics label it with
        self.answered += 1
        await self._run(scope, receive, send, user, call)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, user: User, call: ExecCall
    ) -> None:
        request = Request(scope, receive)
        try:
            answer = await exec_as_json(request, scope["app"].state.services, user.id, call)
        except AgentcellError as exc:
            await (await agentcell_error(request, exc))(scope, receive, send)
            return
        if answer is None:
            await Response(status_code=CLIENT_CLOSED)(scope, receive, send)
            return
        await Response(answer.model_dump_json(), media_type="application/json")(
            scope, receive, send
        )


async def exec_as_json(
    request: Request, services: Services, user_id: str, call: ExecCall
) -> ExecResponse | None:
    """The exec's whole answer, as the route and the fast path both give it; None when the
    client hung up first, which stops the code in the cell (as a closed stream does)."""
    result = await unless_disconnected(request, services.execs.run(user_id, call))
    return None if result is None else ExecResponse.model_validate(result, from_attributes=True)


def _wants_stream(scope: Scope) -> bool:
    return any(
        name == b"accept" and b"text/event-stream" in value for name, value in scope["headers"]
    )
