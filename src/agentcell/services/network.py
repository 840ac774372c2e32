"""Egress (DESIGN §10): a user's network policy within the admin's rules, the admin's rules, and
users' secrets (kept sealed; the cell gets a placeholder). Changes reach the gateway at once,
so the next connection out of the cell follows them; nothing restarts."""

from __future__ import annotations

import json
import re

from agentcell.config import Settings
from agentcell.egress.gateway import Gateway
from agentcell.egress.placeholders import new_placeholder
from agentcell.egress.policy import check_within, effective
from agentcell.errors import Conflict, InvalidRequest, NotFound
from agentcell.schemas import (
    NETWORK_MODES,
    SECRET_NAME,
    SECRET_VALUE_MAX,
    AdminNetwork,
    CellNetwork,
    NetworkPolicy,
    SecretPublic,
)
from agentcell.services.audit import Audit
from agentcell.store import Store

# A secret becomes an env var of every program in the cell: these would break the cell.
RESERVED_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TERM", "SHELL", "PWD", "TZ", "NO_PROXY"}
)
RESERVED_PREFIXES = ("AGENTCELL_", "HTTP_", "HTTPS_", "ALL_PROXY", "LD_", "PYTHON", "PIP_",
                     "SSL_", "REQUESTS_", "NODE_", "LC_", "OMP_", "MKL_", "OPENBLAS_")  # fmt: skip


class Network:
    def __init__(self, store: Store, settings: Settings, gateway: Gateway, audit: Audit) -> None:
        self._store = store
        self._settings = settings
        self._gateway = gateway
        self._box = gateway.box
        self._audit = audit

    # --- a user's policy ---------------------------------------------------------------------

    async def policy(self, owner: str) -> CellNetwork:
        admin = await self._gateway.admin_network()
        own = await self._store.network_policy(owner)
        policy = effective(own, admin)
        return CellNetwork(
            **policy.model_dump(),
            source="user" if own is not None else "default",
            ceiling=admin.ceiling,
            ports=sorted({80, 443, *admin.ports}),
        )

    async def mode(self, owner: str) -> str:
        """The mode of what applies to the owner now."""
        return (await self.policy(owner)).mode

    async def set_policy(self, owner: str, policy: NetworkPolicy | None) -> CellNetwork:
        """The owner's own policy (None: back to the admin's default); InvalidRequest above
        the ceiling."""
        if policy is not None:
            check_within(policy, await self._gateway.admin_network())
        await self._store.set_network_policy(owner, policy)
        self._gateway.changed(owner)
        detail = "default" if policy is None else _describe(policy)
        await self._audit.record(owner, "network.set", detail=detail)
        return await self.policy(owner)

    # --- the admin's rules -------------------------------------------------------------------

    async def admin_network(self) -> AdminNetwork:
        return await self._gateway.admin_network()

    async def set_admin_network(self, network: AdminNetwork) -> AdminNetwork:
        if NETWORK_MODES.index(network.default.mode) > NETWORK_MODES.index(network.ceiling):
            raise InvalidRequest(
                f"the default mode {network.default.mode} is wider than the ceiling "
                f"{network.ceiling}",
                hint="raise the ceiling or narrow the default",
            )
        await self._store.set_admin_network(network)
        self._gateway.changed(None)
        detail = f"ceiling {network.ceiling}; default {_describe(network.default)}"
        if network.ports:
            detail += f"; ports {','.join(map(str, network.ports))}"
        await self._audit.record("admin", "network.admin", detail=detail)
        return network

    # --- secrets -----------------------------------------------------------------------------

    async def secrets(self, owner: str) -> list[SecretPublic]:
        return [
            SecretPublic(
                name=row.name,
                hosts=json.loads(row.hosts),
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in await self._store.secrets(owner)
        ]

    async def put_secret(self, owner: str, name: str, value: str, hosts: list[str]) -> SecretPublic:
        """Store (or replace) the owner's secret: its value sealed, the cell's next execs and
        jobs get the placeholder in the env var ``name``."""
        _check_secret(name, value)
        existing = {row.name: row for row in await self._store.secrets(owner)}
        if name not in existing and len(existing) >= self._settings.secrets_per_user_max:
            raise Conflict(
                f"you keep {len(existing)} secrets, the most allowed here",
                hint="delete one you no longer need first",
            )
        row = await self._store.put_secret(
            owner,
            name,
            sealed=self._box.seal(owner, name, value),
            placeholder=new_placeholder(name),
            hosts=hosts,
        )
        self._gateway.changed(owner)
        await self._audit.record(owner, "secret.put", target=name, detail=" ".join(hosts))
        return SecretPublic(
            name=row.name, hosts=hosts, created_at=row.created_at, updated_at=row.updated_at
        )

    async def delete_secret(self, owner: str, name: str) -> None:
        if not await self._store.delete_secret(owner, name):
            raise NotFound(f"you have no secret {name!r}", hint="list your secrets to see names")
        self._gateway.changed(owner)
        await self._audit.record(owner, "secret.delete", target=name)


def _check_secret(name: str, value: str) -> None:
    if not re.match(SECRET_NAME, name):
        raise InvalidRequest(
            f"{name!r} is not a secret name",
            hint="use an environment variable name: capitals, digits and _, e.g. GITHUB_TOKEN",
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        raise InvalidRequest(
            f"{name} is a variable the cell needs for itself", hint="choose another name"
        )
    if not value or len(value) > SECRET_VALUE_MAX or any(c in value for c in "\r\n\x00"):
        raise InvalidRequest(
            f"a secret's value is 1 to {SECRET_VALUE_MAX} characters, on one line",
            hint="it is put into request headers, which hold no line breaks",
        )


def _describe(policy: NetworkPolicy) -> str:
    parts: list[str] = [policy.mode]
    if policy.allow:
        parts.append("allow " + " ".join(policy.allow))
    if policy.deny:
        parts.append("deny " + " ".join(policy.deny))
    return "; ".join(parts)
