"""agentcell: a private, persistent, hardened sandbox ("cell") per user, driven by an agent."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentcell.config import Settings
from agentcell.errors import AgentcellError

if TYPE_CHECKING:
    from agentcell.client import AsyncClient, Client

__all__ = ["AgentcellError", "AsyncClient", "Client", "Settings"]
__version__ = "0.1.0"

_LAZY = {"AsyncClient": "agentcell.client", "Client": "agentcell.client"}


def __getattr__(name: str) -> Any:
    """The clients, imported on first use: ``import agentcell`` stays light (no httpx)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
