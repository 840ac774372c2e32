"""Short-lived tokens for browsers, which cannot send the API key on a page load, an ``<img>``
or a WebSocket (DESIGN §11): each names one owner, one scope (a port of their cell, their
terminals, their desktop) and its end.

A token is signed by the server (HMAC-SHA256 with a key derived from the deployment's secrets
key, so every server of a deployment accepts it); nothing is stored. It dies with its owner's
account, and is good for its scope only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from agentcell.store import Store
from agentcell.store.models import User

PREFIX = "apt1."  # agentcell browser token, version 1
SIGNATURE_BYTES = 16
Scope = int | str  # a port number, or "terminal", "desktop"


@dataclass(frozen=True)
class BrowserToken:
    token: str
    scope: Scope
    expires_at: float  # unix seconds


class BrowserTokens:
    def __init__(self, key: bytes, store: Store) -> None:
        self._key, self._store = key, store

    def issue(self, owner: str, scope: Scope, ttl_s: float) -> BrowserToken:
        expires = round(time.time() + ttl_s)
        claims = json.dumps({"o": owner, "p": scope, "e": expires}, separators=(",", ":"))
        body = _b64(claims.encode())
        return BrowserToken(f"{PREFIX}{body}.{self._sign(body)}", scope, expires)

    def owner_of(self, token: str, scope: Scope) -> str | None:
        """The owner a valid, unexpired token of this scope names; None for any other token."""
        if not token.startswith(PREFIX):
            return None
        body, _, signature = token[len(PREFIX) :].partition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
            return None
        if claims.get("p") != scope or not time.time() < claims.get("e", 0):
            return None
        owner = claims.get("o")
        return owner if isinstance(owner, str) else None

    async def holder(self, token: str, scope: Scope) -> User | None:
        """The user a valid, unexpired token of this scope was given to, if they still exist."""
        owner = self.owner_of(token, scope)
        return None if owner is None else await self._store.get_user(owner)

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return _b64(digest[:SIGNATURE_BYTES])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
