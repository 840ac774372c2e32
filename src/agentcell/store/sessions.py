"""Chat sessions and their messages. Every call takes the owner's id; another user's session
is "not found"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from agentcell.errors import NotFound
from agentcell.store.common import Tables, clip, new_id, no_nul
from agentcell.store.models import TITLE_MAX, ChatSession, Message, utcnow

AUTO_TITLE_MAX = 60  # a session without a title is named after its first prompt


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def session_not_found(session_id: str) -> NotFound:
    return NotFound(f"no session {session_id!r}", hint="list your sessions: GET /v1/sessions")


class SessionTable(Tables):
    async def create_session(self, user_id: str, title: str = "") -> ChatSession:
        """A new, empty session. Without a title, the first prompt names it (see add_turn)."""
        now = utcnow()
        row = ChatSession(
            id=new_id("s_"),
            user_id=user_id,
            title=clip(title.strip(), TITLE_MAX),
            created_at=now,
            updated_at=now,
        )
        async with self._session() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise NotFound(f"no user {user_id!r}") from None
        return row

    async def list_sessions(self, user_id: str) -> list[ChatSession]:
        """The user's sessions, most recently used first."""
        query = (
            select(ChatSession)
            .where(ChatSession.user_id == user_id)
            .order_by(ChatSession.updated_at.desc(), ChatSession.id)
        )
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def get_session(self, user_id: str, session_id: str) -> ChatSession | None:
        """The session, or None when there is none of that id *for this user*."""
        query = select(ChatSession).where(
            ChatSession.id == session_id, ChatSession.user_id == user_id
        )
        async with self._session() as session:
            return (await session.scalars(query)).first()

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        """Delete the session and its messages. False when the user has no such session."""
        query = (
            delete(ChatSession)
            .where(ChatSession.id == session_id, ChatSession.user_id == user_id)
            .returning(ChatSession.id)
        )
        async with self._session() as session:
            deleted = await session.scalar(query)
            await session.commit()
            return deleted is not None

    async def add_turn(
        self,
        user_id: str,
        session_id: str,
        prompt: str,
        answer: str,
        events_json: str | bytes,
        model_json: str | bytes,
        *,
        prompt_at: datetime | None = None,
    ) -> Message:
        """Keep one finished turn, in one transaction: the user's prompt, the assistant's answer
        with the turn's visible events and model messages; the session's ``updated_at`` moves,
        and an untitled session takes its first prompt as title. Returns the assistant's row;
        NotFound when the user has no such session."""
        now = utcnow()
        query = (
            select(ChatSession)
            .where(ChatSession.id == session_id, ChatSession.user_id == user_id)
            .with_for_update()
        )
        async with self._session() as session:
            chat = (await session.scalars(query)).first()
            if chat is None:
                raise session_not_found(session_id)
            if not chat.title:
                chat.title = clip(" ".join(prompt.split()), AUTO_TITLE_MAX)
            chat.updated_at = now
            asked = Message(
                session_id=session_id,
                role="user",
                content=no_nul(prompt),
                events="[]",
                model_messages="",
                created_at=prompt_at or now,
            )
            answered = Message(
                session_id=session_id,
                role="assistant",
                content=no_nul(answer),
                events=_text(events_json),
                model_messages=_text(model_json),
                created_at=now,
            )
            session.add_all([asked, answered])
            await session.commit()
        return answered

    async def messages(self, user_id: str, session_id: str) -> list[Message]:
        """The session's messages, oldest first; none when it is not this user's session."""
        query = (
            select(Message)
            .join(ChatSession, Message.session_id == ChatSession.id)
            .where(Message.session_id == session_id, ChatSession.user_id == user_id)
            .order_by(Message.id)
        )
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def history(self, user_id: str, session_id: str) -> list[bytes]:
        """The model messages (JSON) of the session's turns, oldest first, to replay."""
        query = (
            select(Message.model_messages)
            .join(ChatSession, Message.session_id == ChatSession.id)
            .where(
                Message.session_id == session_id,
                ChatSession.user_id == user_id,
                Message.role == "assistant",
            )
            .order_by(Message.id)
        )
        async with self._session() as session:
            return [m.encode() for m in (await session.scalars(query)).all()]
