"""The store: users with hashed API keys, chat sessions and their messages, and the audit trail.

Every query about a user's things takes that user's id. Rows come back detached
(``expire_on_commit=False``): read their attributes freely after the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType
from typing import Any, Self, cast

from alembic.util.exc import CommandError
from sqlalchemy import CursorResult, Table, bindparam, delete, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentcell.config import Settings
from agentcell.errors import Conflict, InvalidRequest, NotFound, StoreUnavailable
from agentcell.store import db
from agentcell.store.models import TITLE_MAX, AuditEvent, ChatSession, Message, User, utcnow

log = logging.getLogger(__name__)

AUDIT_BATCH_S = 0.05  # audit events wait at most this long to be written together

NAME_RULE = (
    "1 to 64 characters: lowercase letters, digits, '_', '.' and '-', "
    "starting with a letter or a digit"
)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
KEY_PREFIX = "ac_"
DETAIL_MAX = 2000
TARGET_MAX = 1000
AUDIT_LIMIT_MAX = 1000
AUTO_TITLE_MAX = 60  # a session without a title is named after its first prompt


def hash_key(api_key: str) -> str:
    """sha256 hex of an API key.

    Keys are 32 random bytes (256 bits): nothing can guess or brute-force them, so a slow
    password hash (bcrypt, argon2) would only add latency to every request. A preimage-resistant
    fast hash is enough to make a leaked table useless for logging in, and it lets us find the
    user by an indexed equality lookup on the hash, with no comparison of secrets in our code.
    """
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_user_id() -> str:
    return "u_" + secrets.token_hex(8)


def new_session_id() -> str:
    return "s_" + secrets.token_hex(8)


def new_exec_ref() -> str:
    return "x_" + secrets.token_hex(8)


def validate_name(name: str) -> str:
    # fullmatch, not ``$``: ``$`` also matches before a trailing newline.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"invalid user name {name!r}", hint=f"a user name is {NAME_RULE}")
    return name


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; output of a user's program can.
    return text.replace("\x00", "\ufffd")


def _clip(text: str, limit: int) -> str:
    text = _no_nul(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _session_not_found(session_id: str) -> NotFound:
    return NotFound(f"no session {session_id!r}", hint="list your sessions: GET /v1/sessions")


def _unavailable(exc: Exception) -> StoreUnavailable:
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).strip().splitlines() or [""])[0]
    return StoreUnavailable(f"database error: {type(orig).__name__}: {first_line}")


def _event(
    user_id: str,
    action: str,
    target: str,
    detail: str,
    exit_code: int | None,
    duration_ms: float | None,
    ok: bool,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "at": utcnow(),
        "action": action,
        "target": _clip(target, TARGET_MAX),
        "detail": _clip(detail, DETAIL_MAX),
        "exit_code": exit_code,
        "duration_ms": duration_ms,
        "ok": ok,
        "ref": None,
        "status": "",
        "started_by": "",
    }


_AUDIT = cast(Table, AuditEvent.__table__)
_END_EXEC = (
    update(_AUDIT)
    .where(_AUDIT.c.ref == bindparam("b_ref"))
    .values(
        status=bindparam("b_status"),
        exit_code=bindparam("b_exit_code"),
        duration_ms=bindparam("b_duration_ms"),
        ok=bindparam("b_ok"),
        detail=bindparam("b_detail"),
    )
)


class Store:
    """Open with ``await Store.open(url)`` (migrates first); ``close()`` or ``async with``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._pending: list[dict[str, Any]] = []  # audit events not yet written (see ``record``)
        self._ends: list[dict[str, Any]] = []  # outcomes of execs whose start row was written
        self._unwritten: dict[str, dict[str, Any]] = {}  # exec starts still in ``_pending``
        self._open_execs: dict[str, str] = {}  # running execs: ref -> the row's detail
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str) -> Store:
        """Migrate the database to head (off the event loop), then connect."""
        try:
            await asyncio.to_thread(db.upgrade, url)
        except (OperationalError, InterfaceError) as exc:
            raise _unavailable(exc) from exc
        except CommandError as exc:
            raise StoreUnavailable(
                f"cannot migrate the database: {exc}",
                hint="the database may have been migrated by a newer agentcell; "
                "upgrade agentcell, or point AGENTCELL_DATABASE_URL at another database",
            ) from exc
        store = cls(db.async_engine(url))
        log.info("store open: %s", db.async_url(url).render_as_string(hide_password=True))
        return store

    @classmethod
    async def from_settings(cls, settings: Settings) -> Store:
        return await cls.open(db.database_url(settings))

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self.flush()
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise _unavailable(exc) from exc

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (for health checks)."""
        async with self._session() as session:
            await session.execute(text("SELECT 1"))

    # users

    async def create_user(self, name: str) -> tuple[User, str]:
        """A new user and their API key. The key is shown this once: only its hash is kept."""
        validate_name(name)
        api_key = new_api_key()
        user = User(
            id=new_user_id(),
            name=name,
            key_hash=hash_key(api_key),
            key_prefix=api_key[:8],
            created_at=utcnow(),
        )
        async with self._session() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                raise Conflict(
                    f"a user named {name!r} exists already", hint="choose another name"
                ) from None
        return user, api_key

    async def list_users(self) -> list[User]:
        async with self._session() as session:
            return list((await session.scalars(select(User).order_by(User.name))).all())

    async def get_user(self, user_id: str) -> User | None:
        async with self._session() as session:
            return await session.get(User, user_id)

    async def user_by_key(self, api_key: str) -> User | None:
        """The key's owner, found by the key's hash (see ``hash_key``), or None."""
        async with self._session() as session:
            found = await session.scalars(select(User).where(User.key_hash == hash_key(api_key)))
            return found.first()

    async def delete_user(self, user_id: str) -> bool:
        """Delete the user and their sessions; their audit trail stays. False when there was no
        such user."""
        async with self._session() as session:
            query = delete(User).where(User.id == user_id).returning(User.id)
            deleted = await session.scalar(query)
            await session.commit()
            return deleted is not None

    # chat sessions: every call takes the owner's id; another user's session is "not found"

    async def create_session(self, user_id: str, title: str = "") -> ChatSession:
        """A new, empty session. Without a title, the first prompt names it (see add_turn)."""
        now = utcnow()
        row = ChatSession(
            id=new_session_id(),
            user_id=user_id,
            title=_clip(title.strip(), TITLE_MAX),
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
                raise _session_not_found(session_id)
            if not chat.title:
                chat.title = _clip(" ".join(prompt.split()), AUTO_TITLE_MAX)
            chat.updated_at = now
            asked = Message(
                session_id=session_id,
                role="user",
                content=_no_nul(prompt),
                events="[]",
                model_messages="",
                created_at=prompt_at or now,
            )
            answered = Message(
                session_id=session_id,
                role="assistant",
                content=_no_nul(answer),
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

    # audit

    async def record(
        self,
        user_id: str,
        action: str,
        *,
        target: str = "",
        detail: str = "",
        exit_code: int | None = None,
        duration_ms: float | None = None,
        ok: bool = True,
    ) -> None:
        """Append one event to the audit trail (``detail`` is trimmed to 2000 characters)."""
        self._queue(_event(user_id, action, target, detail, exit_code, duration_ms, ok))

    def exec_started(self, owner: str, started_by: str, language: str, code: str) -> str:
        """Record an exec that starts now (status "running"); its row is written within
        ``AUDIT_BATCH_S``. Returns the reference ``exec_ended`` completes it by."""
        ref = new_exec_ref()
        event = _event(owner, "exec", language, code, None, None, False)
        event.update(ref=ref, status="running", started_by=_clip(started_by, 64))
        self._open_execs[ref] = event["detail"]
        self._unwritten[ref] = event
        self._queue(event)
        return ref

    def exec_ended(
        self, ref: str, *, exit_code: int | None, duration_ms: float, ok: bool, error: str = ""
    ) -> None:
        """Complete an exec's row: status "done" with its outcome (``error`` leads the detail)."""
        detail = self._open_execs.pop(ref, "")
        outcome = {
            "status": "done",
            "exit_code": exit_code,
            "duration_ms": duration_ms,
            "ok": ok,
            "detail": _clip(f"{error}\n{detail}" if error else detail, DETAIL_MAX),
        }
        start = self._unwritten.pop(ref, None)
        if start is not None:  # not written yet: one insert carries it all
            start.update(outcome)
            return
        self._ends.append({"b_ref": ref, **{f"b_{k}": v for k, v in outcome.items()}})
        self._queue(None)

    async def close_unfinished_execs(self) -> int:
        """Mark execs still "running" as "unfinished": a server that stopped without ending
        them (killed, crashed) ran them. Call at start, before any exec. Returns how many."""
        unfinished = literal("unfinished: the server stopped before this exec ended\n")
        query = (
            update(AuditEvent)
            .where(AuditEvent.status == "running")
            .values(status="unfinished", ok=False, detail=unfinished + AuditEvent.detail)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as session:
            result = cast(CursorResult[Any], await session.execute(query))
            count = result.rowcount
            await session.commit()
        if count:
            log.warning("audit: %d execs were cut short by the last server stop", count)
        return int(count)

    def _queue(self, event: dict[str, Any] | None) -> None:
        # Written behind the caller, in batches: an exec's answer does not wait for a commit.
        # ``audit()`` and ``close()`` flush first, so readers never miss an event.
        if event is not None:
            self._pending.append(event)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())

    async def _write_pending(self) -> None:
        await asyncio.sleep(AUDIT_BATCH_S)  # gather what the next requests record, too
        while self._pending or self._ends:
            batch, self._pending = self._pending, []
            ends, self._ends = self._ends, []
            for event in batch:
                self._unwritten.pop(event.get("ref") or "", None)
            try:
                async with self._session() as session:
                    # One executemany, not the ORM's unit of work: this is the hot path.
                    if batch:
                        await session.execute(insert(AuditEvent), batch)
                    if ends:  # after the inserts: an exec's start may be in this batch
                        conn = await session.connection()
                        await conn.execute(_END_EXEC, ends)
                    await session.commit()
            except StoreUnavailable as exc:
                self._pending[:0] = batch  # kept for the next attempt
                self._ends[:0] = ends
                log.error("audit: %d events wait, the database failed: %s", len(batch), exc)
                return

    async def flush(self) -> None:
        """Wait until every recorded audit event is in the database."""
        busy = self._writer is not None and not self._writer.done()
        while self._pending or self._ends or busy:
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_pending())
            await asyncio.shield(self._writer)
            busy = not self._writer.done()
            if (self._pending or self._ends) and self._writer.done():
                raise StoreUnavailable(f"{len(self._pending)} audit events could not be written")

    async def audit(
        self, user_id: str | None, *, limit: int = 100, before_id: int | None = None
    ) -> list[AuditEvent]:
        """Events newest first: one user's, or everyone's when ``user_id`` is None (admin).

        Page on with ``before_id`` = the last id of the previous page.
        """
        if not 1 <= limit <= AUDIT_LIMIT_MAX:
            raise InvalidRequest(
                f"limit {limit} out of range", hint=f"ask for 1 to {AUDIT_LIMIT_MAX} events"
            )
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if user_id is not None:
            query = query.where(AuditEvent.user_id == user_id)
        if before_id is not None:
            query = query.where(AuditEvent.id < before_id)
        await self.flush()
        async with self._session() as session:
            return list((await session.scalars(query)).all())
