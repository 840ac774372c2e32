"""Which hosts a policy lets a cell reach, by name (the address is checked after resolving, in
``addresses``). Patterns are ``schemas.host_pattern``'s: a name, or ``*.d`` for every name below
d (not d itself). Deny wins over allow; ``public`` allows every name not denied."""

from __future__ import annotations

from dataclasses import dataclass

from agentcell.errors import InvalidRequest
from agentcell.schemas import NETWORK_MODES, AdminNetwork, NetworkMode, NetworkPolicy

ALLOW_HINT = "agentcell network allow {host}; PUT /v1/cell/network"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str  # a sentence naming the rule


def matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def decide(policy: NetworkPolicy, host: str) -> Verdict:
    """Whether the policy lets the cell reach ``host`` (lower case, no trailing dot)."""
    host = host.lower().rstrip(".")
    hint = ALLOW_HINT.format(host=host)
    if policy.mode == "none":
        return Verdict(False, f"your network policy is none: no host is allowed ({hint})")
    for pattern in policy.deny:
        if matches(pattern, host):
            return Verdict(False, f"{host} is denied by your rule {pattern}")
    if policy.mode == "public":
        return Verdict(True, "public")
    for pattern in policy.allow:
        if matches(pattern, host):
            return Verdict(True, f"allowed by {pattern}")
    return Verdict(False, f"{host} is not in your allow list ({hint})")


def _rank(mode: NetworkMode) -> int:
    return NETWORK_MODES.index(mode)


def effective(own: NetworkPolicy | None, admin: AdminNetwork) -> NetworkPolicy:
    """What applies to a user: their own policy or the admin's default, no wider than the
    ceiling (a mode above it falls to it; the admin's default deny list always applies)."""
    policy = own or admin.default
    mode = policy.mode if _rank(policy.mode) <= _rank(admin.ceiling) else admin.ceiling
    deny = list(dict.fromkeys([*policy.deny, *admin.default.deny]))
    return NetworkPolicy(mode=mode, allow=policy.allow, deny=deny)


def check_within(policy: NetworkPolicy, admin: AdminNetwork) -> None:
    """InvalidRequest when the policy's mode is wider than the admin's ceiling."""
    if _rank(policy.mode) > _rank(admin.ceiling):
        raise InvalidRequest(
            f"mode {policy.mode} is wider than this server allows (at most {admin.ceiling})",
            hint="ask the admin to raise the ceiling, or allow the hosts you need one by one"
            if admin.ceiling == "allowlist"
            else "ask the admin to raise the ceiling",
        )
