"""What a cell holds instead of a secret: a random token, stable for the secret's life."""

from __future__ import annotations

import secrets


def new_placeholder(name: str) -> str:
    """A token that looks like a value (safe in headers and URLs), unguessable, and says what
    it stands for to a human who finds it."""
    return f"agentcell-secret-{name.lower().replace('_', '-')}-{secrets.token_hex(16)}"
