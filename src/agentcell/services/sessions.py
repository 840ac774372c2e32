"""Chat sessions: conversations with the agent, which works in the owner's cell. Another user's
session is "not found", as one that does not exist."""

from __future__ import annotations

from agentcell.errors import NotFound
from agentcell.services.audit import Audit
from agentcell.services.turns import Turns
from agentcell.store import ChatSession, Message, Store


def _not_found(session_id: str) -> NotFound:
    return NotFound(f"no session {session_id!r}", hint="list your sessions: GET /v1/sessions")


class Sessions:
    def __init__(self, store: Store, turns: Turns, audit: Audit) -> None:
        self._store, self._turns, self._audit = store, turns, audit

    async def create(self, owner: str, title: str = "") -> ChatSession:
        """A new session; without a title, its first message names it."""
        session = await self._store.create_session(owner, title)
        await self._audit.record(owner, "session.create", target=session.id)
        return session

    async def list_sessions(self, owner: str) -> list[ChatSession]:
        """The owner's sessions, most recently used first."""
        return await self._store.list_sessions(owner)

    async def get(self, owner: str, session_id: str) -> ChatSession:
        session = await self._store.get_session(owner, session_id)
        if session is None:
            raise _not_found(session_id)
        return session

    async def delete(self, owner: str, session_id: str) -> None:
        """Delete the session and its messages; a turn running in it is stopped (here at once;
        on another server when it next renews its lock, which went with the session)."""
        await self.get(owner, session_id)
        self._turns.stop(session_id, "the session was deleted")
        if not await self._store.delete_session(owner, session_id):
            raise _not_found(session_id)
        await self._audit.record(owner, "session.delete", target=session_id)

    async def messages(self, owner: str, session_id: str) -> list[Message]:
        """The session's messages, oldest first: each user message, then the assistant's
        answer with the events its turn showed."""
        await self.get(owner, session_id)
        return await self._store.messages(owner, session_id)
