"""The port relay's use cases (DESIGN §11): what listens in a user's cell, a connection to it,
and the short-lived tokens that let a browser open a relayed page without the API key.

A token is signed by the server (HMAC-SHA256 with a key derived from the deployment's secrets
key, so every server of a deployment accepts it) and names one owner, one port and its end;
nothing is stored. It is scoped to that port's paths only, and dies with its owner's account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from agentcell.config import Settings
from agentcell.errors import InvalidRequest
from agentcell.executor.duplex import Duplex
from agentcell.executor.protocol import Port
from agentcell.sandbox.service import CellService
from agentcell.services.audit import Audit
from agentcell.store import Store
from agentcell.store.models import User

TOKEN_PREFIX = "apt1."  # agentcell port token, version 1
SIGNATURE_BYTES = 16


@dataclass(frozen=True)
class PortToken:
    token: str
    port: int
    expires_at: float  # unix seconds


def check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise InvalidRequest(
            f"port {port} is not a TCP port", hint="give a port from 1 to 65535, e.g. 8080"
        )
    return port


class PortTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, owner: str, port: int, ttl_s: float) -> PortToken:
        expires = time.time() + ttl_s
        claims = json.dumps({"o": owner, "p": port, "e": round(expires)}, separators=(",", ":"))
        body = _b64(claims.encode())
        return PortToken(f"{TOKEN_PREFIX}{body}.{self._sign(body)}", port, round(expires))

    def owner_of(self, token: str, port: int) -> str | None:
        """The owner a valid, unexpired token of this port names; None for any other token."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        body, _, signature = token[len(TOKEN_PREFIX) :].partition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
            return None
        if claims.get("p") != port or not time.time() < claims.get("e", 0):
            return None
        owner = claims.get("o")
        return owner if isinstance(owner, str) else None

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return _b64(digest[:SIGNATURE_BYTES])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Ports:
    def __init__(
        self, cells: CellService, store: Store, settings: Settings, audit: Audit, key: bytes
    ) -> None:
        self._cells, self._store, self._settings, self._audit = cells, store, settings, audit
        self.tokens = PortTokens(key)

    async def listening(self, owner: str) -> list[Port]:
        return await self._cells.ports(owner)

    def connect(self, owner: str, port: int) -> AbstractAsyncContextManager[Duplex]:
        return self._cells.connect(owner, check_port(port))

    async def token(self, owner: str, port: int) -> PortToken:
        token = self.tokens.issue(owner, check_port(port), self._settings.port_token_ttl_s)
        await self._audit.record(owner, "port.token", target=str(port))
        return token

    def cookie(self, owner: str, port: int) -> PortToken:
        """What a browser keeps for the port once it opened a token's URL."""
        return self.tokens.issue(owner, port, self._settings.port_cookie_ttl_s)

    async def holder(self, token: str, port: int) -> User | None:
        """The user a port token (or cookie) of this port was given to, if it is still valid."""
        owner = self.tokens.owner_of(token, port)
        return None if owner is None else await self._store.get_user(owner)
