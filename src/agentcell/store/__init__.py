"""Persistence: users with hashed API keys, chat sessions and messages, the audit trail, turn
locks and cell placements, on SQLite or PostgreSQL."""

from agentcell.store.db import database_url
from agentcell.store.models import AuditEvent, ChatSession, Message, User
from agentcell.store.placements import Placements
from agentcell.store.store import Store
from agentcell.store.users import hash_key, validate_name

__all__ = [
    "AuditEvent",
    "ChatSession",
    "Message",
    "Placements",
    "Store",
    "User",
    "database_url",
    "hash_key",
    "validate_name",
]
