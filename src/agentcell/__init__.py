"""agentcell: a private, persistent, hardened sandbox ("cell") per user, driven by an agent."""

from agentcell.config import Settings
from agentcell.errors import AgentcellError

__all__ = ["AgentcellError", "Settings"]
__version__ = "0.1.0"
