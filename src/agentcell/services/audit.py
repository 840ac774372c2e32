"""The audit trail: every use case's record is written here, by the service that ran it.

Execs are the one exception: the cell audits every exec itself, whoever runs it (an API call,
the agent's tools), in ``sandbox.audit``; the store is its sink.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from agentcell.store import AuditEvent, Store

Action = Literal[
    "user.create",
    "user.delete",
    "user.key",
    "admin.token",
    "signin",
    "signout",
    "session.create",
    "session.delete",
    "chat",
    "file.write",
    "file.extract",
    "file.delete",
    "process.kill",
    "cell.restart",
    "cell.delete",
    "cell.admin",
    "job.create",
    "job.cancel",
    "job.retry",
    "job.delete",
    "job.end",
    "schedule.create",
    "schedule.fire",
    "schedule.pause",
    "schedule.resume",
    "schedule.delete",
    "egress",
    "network.set",
    "network.admin",
    "secret.put",
    "secret.delete",
    "port.token",
    "terminal.open",
    "terminal.close",
    "terminal.token",
    "desktop.open",
    "jupyter.start",
]


class Audit:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self,
        owner: str,
        action: Action,
        *,
        target: str = "",
        detail: str = "",
        duration_ms: float | None = None,
        ok: bool = True,
    ) -> None:
        """Add an event to the owner's trail (written behind the caller, within moments)."""
        await self._store.record(
            owner, action, target=target, detail=detail, duration_ms=duration_ms, ok=ok
        )

    async def events(
        self,
        owner: str | None,
        *,
        limit: int,
        before_id: int | None = None,
        kind: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        """The owner's events, newest first (everyone's for ``None``: the admin); ``kind``:
        those of one kind only (``egress``, ``job``, ``exec``...); ``since``/``until``: a time
        window."""
        return await self._store.audit(
            owner, limit=limit, before_id=before_id, kind=kind, since=since, until=until
        )
