"""The audit trail: events written behind the caller in batches, execs recorded when they start
and completed when they end."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcell.errors import InvalidRequest, StoreUnavailable
from agentcell.store.common import Tables, clip, new_id
from agentcell.store.models import AuditEvent, utcnow

log = logging.getLogger(__name__)

AUDIT_BATCH_S = 0.05  # audit events wait at most this long to be written together
DETAIL_MAX = 2000
TARGET_MAX = 1000
AUDIT_LIMIT_MAX = 1000


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
        "target": clip(target, TARGET_MAX),
        "detail": clip(detail, DETAIL_MAX),
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


class AuditTrail(Tables):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._pending: list[dict[str, Any]] = []  # audit events not yet written (see ``record``)
        self._ends: list[dict[str, Any]] = []  # outcomes of execs whose start row was written
        self._unwritten: dict[str, dict[str, Any]] = {}  # exec starts still in ``_pending``
        self._open_execs: dict[str, str] = {}  # running execs: ref -> the row's detail
        self._writer: asyncio.Task[None] | None = None

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
        ref = new_id("x_")
        event = _event(owner, "exec", language, code, None, None, False)
        event.update(ref=ref, status="running", started_by=clip(started_by, 64))
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
            "detail": clip(f"{error}\n{detail}" if error else detail, DETAIL_MAX),
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
                    # One executemany on the table, past the ORM (even its bulk insert): this
                    # is the hot path, a row or two for every exec.
                    conn = await session.connection()
                    if batch:
                        await conn.execute(insert(_AUDIT), batch)
                    if ends:  # after the inserts: an exec's start may be in this batch
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
        self,
        user_id: str | None,
        *,
        limit: int = 100,
        before_id: int | None = None,
        kind: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        """Events newest first: one user's, or everyone's when ``user_id`` is None (admin);
        ``kind``: only actions of that kind (``job`` takes ``job.create``, ``job.end``...);
        ``since`` / ``until``: at or after, before those times.

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
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if until is not None:
            query = query.where(AuditEvent.at < until)
        if kind:
            query = query.where(
                or_(
                    AuditEvent.action == kind,
                    AuditEvent.action.startswith(f"{kind}.", autoescape=True),
                )
            )
        await self.flush()
        async with self._session() as session:
            return list((await session.scalars(query)).all())
