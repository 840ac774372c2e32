"""Persistence: users with hashed API keys, chat sessions and messages, the audit trail, turn
locks, cell placements, jobs and schedules, on SQLite or PostgreSQL."""

from agentcell.store.db import database_url
from agentcell.store.models import AuditEvent, ChatSession, Job, JobEvent, Message, Schedule, User
from agentcell.store.placements import Placements
from agentcell.store.store import Store
from agentcell.store.users import hash_key, validate_name

__all__ = [
    "AuditEvent",
    "ChatSession",
    "Job",
    "JobEvent",
    "Message",
    "Placements",
    "Schedule",
    "Store",
    "User",
    "database_url",
    "hash_key",
    "validate_name",
]
