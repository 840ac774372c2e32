"""What the proxy knows of one connection besides its bytes: whose cell it came from and what
that user allows. The gateway builds it from the store for every new connection, so a policy
change applies to the next connection without restarting anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agentcell.schemas import NetworkPolicy

DEFAULT_PORTS = frozenset({80, 443})


@dataclass(frozen=True)
class SecretRule:
    """A secret of the owner's: the cell holds ``placeholder`` in the env var ``name``; the proxy
    swaps it for ``value`` on requests to ``hosts`` (patterns as in policies) only."""

    name: str
    placeholder: str
    value: str = field(repr=False)
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class EgressContext:
    owner: str
    policy: NetworkPolicy
    ports: frozenset[int] = DEFAULT_PORTS
    secrets: tuple[SecretRule, ...] = ()


class Meter(Protocol):
    """One connection's share of its owner's byte budget."""

    def take(self, n: int) -> float:
        """Count n bytes moved; the seconds to wait before moving more (0: go on)."""
        ...
