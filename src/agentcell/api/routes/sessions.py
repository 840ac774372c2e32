"""Chat sessions: conversations with the agent, which works in the caller's cell.

Another user's session answers 404, as a session that does not exist. A session runs one turn
at a time; ``POST /{id}/messages`` streams the turn as SSE (``Accept: text/event-stream``) or
answers when it is done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Request, Response, status
from fastapi.responses import StreamingResponse

from agentcell.agent.models import build_model
from agentcell.agent.runner import run_turn
from agentcell.api.deps import CellsDep, CurrentUser, SettingsDep, StoreDep
from agentcell.api.routes.cell import SSE_HEADERS, sse
from agentcell.api.schemas import (
    ChatReply,
    ChatRequest,
    ChatUsage,
    MessagePublic,
    SessionCreate,
    SessionPublic,
)
from agentcell.api.turns import ModelFactory, Turn, Turns
from agentcell.errors import AgentcellError, InvalidRequest, ModelNotConfigured, NotFound
from agentcell.sandbox.service import CellHandle
from agentcell.store import ChatSession, Message, Store

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

HEARTBEAT_S = 15.0  # an SSE comment this often while the agent works quietly (proxies hang up)


def check_model(app: FastAPI) -> None:
    """Say once, at start, when chat cannot work: no model is configured. (Each chat request
    then answers 503 with the same message, and is not logged again.)"""
    factory: ModelFactory = getattr(app.state, "model_factory", None) or build_model
    try:
        factory(app.state.settings)
    except ModelNotConfigured as exc:
        log.warning("chat is off: %s; %s", exc.message, exc.hint)
    except AgentcellError as exc:
        log.warning("chat will fail: %s; %s", exc.message, exc.hint)


def _turns(request: Request) -> Turns:
    state = request.app.state
    turns: Turns | None = getattr(state, "turns", None)
    if turns is None:
        turns = state.turns = Turns()
    return turns


async def _owned(store: Store, owner: str, session_id: str) -> ChatSession:
    session = await store.get_session(owner, session_id)
    if session is None:
        raise NotFound(f"no session {session_id!r}", hint="list your sessions: GET /v1/sessions")
    return session


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
    store: StoreDep,
    body: Annotated[SessionCreate | None, Body()] = None,
) -> SessionPublic:
    """A new session; without a title, its first message names it."""
    session = await store.create_session(user.id, body.title if body else "")
    await store.record(user.id, "session.create", target=session.id)
    return SessionPublic.model_validate(session, from_attributes=True)


@router.get("")
async def list_sessions(user: CurrentUser, store: StoreDep) -> list[SessionPublic]:
    """The caller's sessions, most recently used first."""
    sessions = await store.list_sessions(user.id)
    return [SessionPublic.model_validate(s, from_attributes=True) for s in sessions]


@router.get("/{session_id}")
async def get_session(session_id: str, user: CurrentUser, store: StoreDep) -> SessionPublic:
    session = await _owned(store, user.id, session_id)
    return SessionPublic.model_validate(session, from_attributes=True)


@router.delete("/{session_id}", status_code=204)
async def delete_session(
    session_id: str, request: Request, user: CurrentUser, store: StoreDep
) -> Response:
    """Delete the session and its messages; a turn running in it is stopped."""
    await _owned(store, user.id, session_id)
    running = _turns(request).get(session_id)
    if running is not None:
        running.cancel("the session was deleted")
    if not await store.delete_session(user.id, session_id):
        raise NotFound(f"no session {session_id!r}")
    await store.record(user.id, "session.delete", target=session_id)
    return Response(status_code=204)


@router.get("/{session_id}/messages")
async def list_messages(session_id: str, user: CurrentUser, store: StoreDep) -> list[MessagePublic]:
    """The session's messages, oldest first: each user message, then the assistant's answer
    with the events its turn showed."""
    await _owned(store, user.id, session_id)
    return [_message(m) for m in await store.messages(user.id, session_id)]


async def _event_stream(turn: Turn) -> AsyncIterator[bytes]:
    async for event in turn.events(HEARTBEAT_S):
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
    store: StoreDep,
    cells: CellsDep,
    settings: SettingsDep,
) -> ChatReply | StreamingResponse:
    """Send a message; the agent works in the caller's cell. ``Accept: text/event-stream``
    streams ``text``, ``tool_call``, ``tool_result`` and ``agent`` events as the turn runs, then
    ``done`` (the turn is kept by then) or ``error`` (nothing is kept). Closing the stream stops
    the turn. One turn at a time per session: another answers 409."""
    if not body.content.strip():
        raise InvalidRequest("the message is empty", hint="send some text to ask the agent")
    await _owned(store, user.id, session_id)
    turn = _turns(request).claim(user.id, session_id, body.content, store)
    try:
        factory: ModelFactory = getattr(request.app.state, "model_factory", None) or build_model
        model = factory(settings)  # none configured: a 503 that names AGENTCELL_MODEL
        history = await store.history(user.id, session_id)
        await cells.ensure(user.id)
        cell = CellHandle(cells, user.id)
        events = run_turn(
            settings=settings,
            cell=cell,
            session_id=session_id,
            prompt=body.content,
            history=history,
            model=model,
        )
    except BaseException as exc:
        await turn.refuse(exc)
        raise
    turn.start(cell, events)
    if "text/event-stream" in request.headers.get("accept", ""):
        stream = _event_stream(turn)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    done = await turn.result()
    return ChatReply(
        content=done.output,
        events=turn.shown,
        usage=ChatUsage.model_validate(done.usage, from_attributes=True),
    )
