"""Where a cell's connections meet the proxy: each is given the context of the user whose cell
it came through (their policy within the admin's rules, the ports, their secrets), carried by
the proxy, and audited (``egress``: host:port, verdict and reason, bytes each way, duration).

What the store says is cached for CACHE_S, and dropped at once by ``changed`` when this server
changes it, so a new policy applies to the next connection."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from agentcell.config import Settings
from agentcell.egress.context import DEFAULT_PORTS, EgressContext, SecretRule
from agentcell.egress.policy import effective
from agentcell.egress.proxy import EgressProxy
from agentcell.egress.records import EgressRecord
from agentcell.egress.sealing import SecretBox, SecretUnreadable
from agentcell.egress.streams import open_streams
from agentcell.executor.duplex import Duplex
from agentcell.schemas import AdminNetwork
from agentcell.store import Store

log = logging.getLogger(__name__)
CACHE_S = 2.0  # how stale another server's change may be seen here
T = TypeVar("T")


class Cached(Generic[T]):
    """Values by key, each fetched on first use and kept CACHE_S."""

    def __init__(self, fetch: Callable[[str], Awaitable[T]]) -> None:
        self.fetch = fetch
        self.values: dict[str, tuple[float, T]] = {}

    async def get(self, key: str) -> T:
        now = time.monotonic()
        hit = self.values.get(key)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        value = await self.fetch(key)
        self.values[key] = (now, value)
        return value

    def drop(self, key: str | None = None) -> None:
        if key is None:
            self.values.clear()
        else:
            self.values.pop(key, None)


def admin_network_of(settings: Settings) -> AdminNetwork:
    """The admin's network rules as the settings give them (before any PUT /v1/admin/network)."""
    return AdminNetwork(
        default=settings.network_default,
        ceiling=settings.network_ceiling,
        ports=settings.network_ports,
    )


class Gateway:
    """``sandbox.egress.EgressHooks`` over the proxy and the store."""

    def __init__(self, store: Store, settings: Settings, proxy: EgressProxy, box: SecretBox):
        self.store = store
        self.settings = settings
        self.proxy = proxy
        self.box = box
        self.admin = Cached(self._admin)
        self.contexts = Cached(self._context)
        self.placeholders = Cached(self._placeholders)

    def changed(self, owner: str | None = None) -> None:
        """This server changed the owner's policy or secrets (None: the admin's rules)."""
        if owner is None:
            self.admin.drop()
            self.contexts.drop()
        else:
            self.contexts.drop(owner)
            self.placeholders.drop(owner)

    async def admin_network(self) -> AdminNetwork:
        return await self.admin.get("")

    # --- EgressHooks -----------------------------------------------------------------------

    async def env(self, owner: str) -> dict[str, str]:
        return await self.placeholders.get(owner)

    async def connection(self, owner: str, conn: Duplex) -> None:
        reader, writer = await open_streams(conn)
        try:
            record = await self.proxy.serve(reader, writer, await self.contexts.get(owner))
        finally:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)
        await self._audit(record)

    # --- from the store ---------------------------------------------------------------------

    async def _admin(self, _key: str) -> AdminNetwork:
        return await self.store.admin_network() or admin_network_of(self.settings)

    async def _context(self, owner: str) -> EgressContext:
        admin = await self.admin_network()
        policy = effective(await self.store.network_policy(owner), admin)
        rules = []
        for row in await self.store.secrets(owner):
            try:
                value = self.box.open(owner, row.name, row.sealed)
            except SecretUnreadable as exc:  # its placeholder goes out as it is, nothing else
                log.warning("secret %s of %s: %s (%s)", row.name, owner, exc.message, exc.hint)
                continue
            hosts = tuple(json.loads(row.hosts))
            rules.append(SecretRule(row.name, row.placeholder, value, hosts))
        ports = DEFAULT_PORTS | frozenset(admin.ports)
        return EgressContext(owner=owner, policy=policy, ports=ports, secrets=tuple(rules))

    async def _placeholders(self, owner: str) -> dict[str, str]:
        return {row.name: row.placeholder for row in await self.store.secrets(owner)}

    async def _audit(self, record: EgressRecord) -> None:
        detail = f"{record.verdict}: {record.reason}" if record.reason else record.verdict
        detail += f"; {record.bytes_up} B up, {record.bytes_down} B down"
        if record.intercepted:
            detail += "; secrets put in"
        await self.store.record(
            record.owner,
            "egress",
            target=f"{record.host}:{record.port}",
            detail=detail,
            duration_ms=record.duration_s * 1000,
            ok=record.verdict == "allowed",
        )
