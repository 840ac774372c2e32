"""Persistence: users with hashed API keys and the audit trail, on SQLite or PostgreSQL."""

from agentcell.store.db import database_url
from agentcell.store.models import AuditEvent, User
from agentcell.store.store import Store, hash_key, validate_name

__all__ = ["AuditEvent", "Store", "User", "database_url", "hash_key", "validate_name"]
