"""Table rows. A change here needs a migration in ``migrations/versions`` (see ``db.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Constraint names that are the same on every database, so migrations can name what they drop.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
TITLE_MAX = 200  # a session's title, in characters (the API refuses longer ones)
JOB_NAME_MAX = 100  # a job's or a schedule's name, in characters


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every database.

    PostgreSQL keeps ``timestamptz`` and answers in the session's zone; SQLite keeps text and
    answers naive values. Both come back here as aware datetimes in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # sha256 hex of the API key; the key itself is never stored (see store.hash_key).
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r})"


class AuditEvent(Base):
    """Who did what, when. ``user_id`` is not a foreign key: the trail outlives the user."""

    __tablename__ = "audit"
    # (user_id, id) serves "this user's events, newest first, before id N" and plain
    # lookups by user_id alike.
    __table_args__ = (Index("ix_audit_user_id_id", "user_id", "id"),)

    # BIGINT on PostgreSQL; SQLite's rowid alias must be spelled INTEGER (it is 64-bit anyway).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    exit_code: Mapped[int | None]
    # Spelled out: SQLAlchemy 2.0 maps ``float`` to Float, 2.1 to Double.
    duration_ms: Mapped[float | None] = mapped_column(Double)
    ok: Mapped[bool]
    # Execs only: ``ref`` names the exec's row, written when it starts and completed when it
    # ends; ``status`` is "running", "done", or "unfinished" (the server stopped first);
    # ``started_by`` is "api", "mcp" or "agent:<session id>". Empty for other events.
    ref: Mapped[str | None] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), server_default=text("''"), default="")
    started_by: Mapped[str] = mapped_column(String(64), server_default=text("''"), default="")

    def __repr__(self) -> str:
        return f"AuditEvent(id={self.id!r}, user_id={self.user_id!r}, action={self.action!r})"


class ChatSession(Base):
    """A conversation with the agent. Deleting the user deletes their sessions."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"ChatSession(id={self.id!r}, user_id={self.user_id!r})"


class Message(Base):
    """One side of a turn: the user's prompt, or the assistant's answer with what it did.

    ``events`` is a JSON list of the turn's visible events (``{"event": ..., **payload}``) for
    display; ``model_messages`` the turn's pydantic-ai messages (JSON), replayed as history on
    the next turn. Both are empty for a user's row.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    session_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # "user" | "assistant"
    content: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)
    model_messages: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, session_id={self.session_id!r}, role={self.role!r})"


class TurnLock(Base):
    """The turn running in a session, whichever server runs it (one at most per session).

    A server claims the row by inserting it, or by taking over one whose lease has expired,
    and deletes it when the turn ends. While the turn runs its server renews ``expires_at``; a
    server that dies stops renewing, so its lease runs out and the session is free again.
    """

    __tablename__ = "turns"

    session_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    holder: Mapped[str] = mapped_column(String(64))  # the turn's own token, new for each turn
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"TurnLock(session_id={self.session_id!r}, holder={self.holder!r})"


class Placement(Base):
    """Which cell is an owner's, on which node (a cell manager: ``Settings.instance``).

    Each node keeps its own owner -> cell map here, as it kept it in a file of its data dir.
    ``owner`` is not a foreign key: cells are managed by owner id, whatever a user row says.
    """

    __tablename__ = "placements"
    __table_args__ = (UniqueConstraint("node", "cell_id", name="uq_placements_node_cell_id"),)

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    cell_id: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"Placement(node={self.node!r}, owner={self.owner!r}, cell_id={self.cell_id!r})"


class Job(Base):
    """Work a user handed off (DESIGN §9): an exec or an agent prompt, its state and outcome.

    ``state`` is a ``schemas.JobState``; each change of it is a ``JobEvent``. ``language`` is
    "" for agent jobs; ``output_dir`` is relative to the workspace; ``node`` names the server
    instance running it. Deleting the user deletes their jobs; deleting the schedule that
    started a job keeps the job (``schedule_id`` becomes NULL).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_id_created_at", "user_id", "created_at"),  # a user's, newest first
        Index("ix_jobs_state_created_at", "state", "created_at"),  # the queue, oldest first
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(JOB_NAME_MAX))
    kind: Mapped[str] = mapped_column(String(16))  # "exec" | "agent"
    language: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(Text)
    file: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    output_dir: Mapped[str] = mapped_column(Text)
    timeout_s: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    exit_code: Mapped[int | None]
    schedule_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("schedules.id", ondelete="SET NULL"), index=True
    )
    attempt: Mapped[int] = mapped_column(server_default=text("1"), default=1)
    retry_of: Mapped[str | None] = mapped_column(String(32))
    node: Mapped[str] = mapped_column(String(64), server_default=text("''"), default="")
    log_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), default=0)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, user_id={self.user_id!r}, state={self.state!r})"


class JobEvent(Base):
    """One state change of a job, with its time and reason (the first is ``queued``)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"JobEvent(job_id={self.job_id!r}, state={self.state!r})"


class Schedule(Base):
    """What starts a job later: once ``at`` a time, or at each match of ``cron`` in ``tz``.

    ``job`` is the JSON of the ``schemas.JobTemplate`` fields each fire starts a job from.
    ``next_run_at`` None: it will not fire again. Deleting the user deletes their schedules.
    """

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(JOB_NAME_MAX))
    kind: Mapped[str] = mapped_column(String(8))  # "at" | "cron"
    cron: Mapped[str] = mapped_column(String(100), server_default=text("''"), default="")
    tz: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"), default="UTC")
    at: Mapped[datetime | None]
    job: Mapped[str] = mapped_column(Text)
    paused: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    # The dispatcher's poll: due ones are ``next_run_at <= now``.
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime]
    last_fired_at: Mapped[datetime | None]
    last_job_id: Mapped[str | None] = mapped_column(String(32))
    fires: Mapped[int] = mapped_column(server_default=text("0"), default=0)
    skips: Mapped[int] = mapped_column(server_default=text("0"), default=0)
    last_skip_reason: Mapped[str] = mapped_column(Text, server_default=text("''"), default="")

    def __repr__(self) -> str:
        return f"Schedule(id={self.id!r}, user_id={self.user_id!r}, kind={self.kind!r})"


class NetworkRule(Base):
    """A user's own egress policy (``schemas.NetworkPolicy`` as JSON); no row: the admin's
    default applies."""

    __tablename__ = "network_policies"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    policy: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class DeploymentSetting(Base):
    """What the admin sets at run time, as JSON by key (``network``: ``schemas.AdminNetwork``)."""

    __tablename__ = "deployment_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Secret(Base):
    """A user's secret: its value sealed (``egress.sealing``), the placeholder the cell holds in
    its place, and the hosts (JSON list of patterns) the value may be sent to."""

    __tablename__ = "secrets"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    placeholder: Mapped[str] = mapped_column(String(128))
    hosts: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"Secret(user_id={self.user_id!r}, name={self.name!r})"


class WebSession(Base):
    """A browser's sign-in (DESIGN §12): the cookie's token is kept only as its hash. ``user_id``
    is None for the admin; deleting the user ends their sessions."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"WebSession(user_id={self.user_id!r}, expires_at={self.expires_at!r})"
