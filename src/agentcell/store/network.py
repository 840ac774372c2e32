"""Egress policies (a user's own; the admin's network rules) and users' secrets (DESIGN §10).
Every call about a user's things takes that user's id. Policies are kept as the JSON of their
``agentcell.schemas`` shapes; a secret's value only ever sealed (``egress.sealing``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentcell.errors import NotFound
from agentcell.schemas import AdminNetwork, NetworkPolicy
from agentcell.store.common import Tables
from agentcell.store.models import DeploymentSetting, NetworkRule, Secret, utcnow

ADMIN_NETWORK_KEY = "network"


def no_such_user(user_id: str) -> NotFound:
    return NotFound(f"no user {user_id!r}")


class NetworkTable(Tables):
    async def network_policy(self, user_id: str) -> NetworkPolicy | None:
        """The user's own policy; None: they set none (the admin's default applies)."""
        async with self._session() as session:
            row = await session.get(NetworkRule, user_id)
        return None if row is None else NetworkPolicy.model_validate_json(row.policy)

    async def set_network_policy(self, user_id: str, policy: NetworkPolicy | None) -> None:
        """Keep the user's policy (None: back to the admin's default). NotFound: no such user."""
        async with self._session() as session, session.begin():
            row = await session.get(NetworkRule, user_id)
            if policy is None:
                if row is not None:
                    await session.delete(row)
                return
            value = policy.model_dump_json()
            if row is None:
                session.add(NetworkRule(user_id=user_id, policy=value, updated_at=utcnow()))
            else:
                row.policy, row.updated_at = value, utcnow()
            await _flush_for_user(session, user_id)

    async def admin_network(self) -> AdminNetwork | None:
        """The admin's network rules as last set at run time; None: the settings' apply."""
        async with self._session() as session:
            row = await session.get(DeploymentSetting, ADMIN_NETWORK_KEY)
        return None if row is None else AdminNetwork.model_validate_json(row.value)

    async def set_admin_network(self, network: AdminNetwork) -> None:
        value = network.model_dump_json()
        for _ in range(2):  # two servers may insert the first row at once: the loser updates
            try:
                async with self._session() as session, session.begin():
                    row = await session.get(DeploymentSetting, ADMIN_NETWORK_KEY)
                    if row is None:
                        session.add(
                            DeploymentSetting(
                                key=ADMIN_NETWORK_KEY, value=value, updated_at=utcnow()
                            )
                        )
                    else:
                        row.value, row.updated_at = value, utcnow()
                return
            except IntegrityError:
                continue

    # --- secrets -----------------------------------------------------------------------------

    async def put_secret(
        self, user_id: str, name: str, *, sealed: bytes, placeholder: str, hosts: Sequence[str]
    ) -> Secret:
        """Store or replace the user's secret ``name``; a replaced one keeps its placeholder
        (running programs hold it) and creation time. NotFound: no such user."""
        async with self._session() as session, session.begin():
            row = await session.get(Secret, (user_id, name))
            now = utcnow()
            if row is None:
                row = Secret(
                    user_id=user_id,
                    name=name,
                    sealed=sealed,
                    placeholder=placeholder,
                    hosts=json.dumps(list(hosts)),
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            else:
                row.sealed, row.hosts, row.updated_at = sealed, json.dumps(list(hosts)), now
            await _flush_for_user(session, user_id)
            return row

    async def secrets(self, user_id: str) -> list[Secret]:
        """The user's secrets by name (sealed values included: callers decide what to show)."""
        async with self._session() as session:
            query = select(Secret).where(Secret.user_id == user_id).order_by(Secret.name)
            return list(await session.scalars(query))

    async def delete_secret(self, user_id: str, name: str) -> bool:
        """Delete the user's secret; False: they had none of that name."""
        async with self._session() as session, session.begin():
            query = delete(Secret).where(Secret.user_id == user_id, Secret.name == name)
            result = await session.execute(query)
        return bool(getattr(result, "rowcount", 0))


async def _flush_for_user(session: AsyncSession, user_id: str) -> None:
    """Flush now, so that a user who is gone shows as NotFound, not as a database error."""
    try:
        await session.flush()
    except IntegrityError:
        raise no_such_user(user_id) from None
