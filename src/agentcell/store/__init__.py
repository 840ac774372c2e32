"""Persistence: users with hashed API keys, chat sessions and messages, and the audit trail,
on SQLite or PostgreSQL."""

from agentcell.store.db import database_url
from agentcell.store.models import AuditEvent, ChatSession, Message, User
from agentcell.store.store import Store, hash_key, validate_name

__all__ = [
    "AuditEvent",
    "ChatSession",
    "Message",
    "Store",
    "User",
    "database_url",
    "hash_key",
    "validate_name",
]
