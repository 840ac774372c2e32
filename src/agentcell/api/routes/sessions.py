"""Chat sessions (``services.sessions``) and their turns (``services.turns``).

Another user's session answers 404, as a session that does not exist. A session runs one turn
at a time; ``POST /{id}/messages`` streams the turn as SSE (``Accept: text/event-stream``) or
answers when it is done.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response, status
from fastapi.responses import StreamingResponse

from agentcell.api.deps import CurrentUser, ServicesDep
from agentcell.api.schemas import ChatRequest, SessionCreate
from agentcell.api.sse import SSE_HEADERS, sse
from agentcell.schemas import ChatReply, ChatUsage, MessagePublic, SessionPublic
from agentcell.services.turns import ChatTurn
from agentcell.store import Message

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

HEARTBEAT_S = 15.0  # an SSE comment this often while the agent works quietly (proxies hang up)


def _message(row: Message) -> MessagePublic:
    return MessagePublic(
        id=row.id,
        role=row.role,  # "user" or "assistant", as add_turn writes
        content=row.content,
        events=json.loads(row.events or "[]"),
        created_at=row.created_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_session(
    user: CurrentUser,
    services: ServicesDep,
    body: Annotated[SessionCreate | None, Body()] = None,
) -> SessionPublic:
    """A new session; without a title, its first message names it."""
    session = await services.sessions.create(user.id, body.title if body else "")
    return SessionPublic.model_validate(session, from_attributes=True)


@router.get("")
async def list_sessions(user: CurrentUser, services: ServicesDep) -> list[SessionPublic]:
    """The caller's sessions, most recently used first."""
    sessions = await services.sessions.list_sessions(user.id)
    return [SessionPublic.model_validate(s, from_attributes=True) for s in sessions]


@router.get("/{session_id}")
async def get_session(session_id: str, user: CurrentUser, services: ServicesDep) -> SessionPublic:
    session = await services.sessions.get(user.id, session_id)
    return SessionPublic.model_validate(session, from_attributes=True)


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    """Delete the session and its messages; a turn running in it is stopped."""
    await services.sessions.delete(user.id, session_id)
    return Response(status_code=204)


@router.get("/{session_id}/messages")
async def list_messages(
    session_id: str, user: CurrentUser, services: ServicesDep
) -> list[MessagePublic]:
    """The session's messages, oldest first: each user message, then the assistant's answer
    with the events its turn showed."""
    return [_message(m) for m in await services.sessions.messages(user.id, session_id)]


async def _event_stream(turn: ChatTurn) -> AsyncIterator[bytes]:
    async with aclosing(turn.events(HEARTBEAT_S)) as events:  # closed early: the turn stops
        async for event in events:
            yield b": working\n\n" if event is None else sse(event.event, event.payload())


@router.post(
    "/{session_id}/messages",
    response_model=ChatReply,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE"}},
)
async def chat(
    session_id: str,
    body: ChatRequest,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
) -> ChatReply | StreamingResponse:
    """Send a message; the agent works in the caller's cell. ``Accept: text/event-stream``
    streams ``text``, ``tool_call``, ``tool_result`` and ``agent`` events as the turn runs, then
    ``done`` (the turn is kept by then) or ``error`` (nothing is kept). Closing the stream stops
    the turn. One turn at a time per session: another answers 409."""
    turn = await services.turns.start(user.id, session_id, body.content)
    if "text/event-stream" in request.headers.get("accept", ""):
        stream = _event_stream(turn)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    done = await turn.result()
    return ChatReply(
        content=done.output,
        events=turn.shown,
        usage=ChatUsage.model_validate(done.usage, from_attributes=True),
    )
