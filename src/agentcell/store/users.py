"""Users and their API keys: only a key's hash is kept."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from agentcell.errors import Conflict, InvalidRequest
from agentcell.store.common import Tables, new_id
from agentcell.store.models import User, utcnow

NAME_RULE = (
    "1 to 64 characters: lowercase letters, digits, '_', '.' and '-', "
    "starting with a letter or a digit"
)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
KEY_PREFIX = "ac_"


def hash_key(api_key: str) -> str:
    """sha256 hex of an API key.

    Keys are 32 random bytes (256 bits): nothing can guess or brute-force them, so a slow
    password hash (bcrypt, argon2) would only add latency to every request. A preimage-resistant
    fast hash is enough to make a leaked table useless for logging in, and it lets us find the
    user by an indexed equality lookup on the hash, with no comparison of secrets in our code.
    """
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def validate_name(name: str) -> str:
    # fullmatch, not ``$``: ``$`` also matches before a trailing newline.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"invalid user name {name!r}", hint=f"a user name is {NAME_RULE}")
    return name


class UserTable(Tables):
    async def create_user(self, name: str) -> tuple[User, str]:
        """A new user and their API key. The key is shown this once: only its hash is kept."""
        validate_name(name)
        api_key = new_api_key()
        user = User(
            id=new_id("u_"),
            name=name,
            key_hash=hash_key(api_key),
            key_prefix=api_key[:8],
            created_at=utcnow(),
        )
        async with self._session() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                raise Conflict(
                    f"a user named {name!r} exists already", hint="choose another name"
                ) from None
        return user, api_key

    async def list_users(self) -> list[User]:
        async with self._session() as session:
            return list((await session.scalars(select(User).order_by(User.name))).all())

    async def get_user(self, user_id: str) -> User | None:
        async with self._session() as session:
            return await session.get(User, user_id)

    async def user_by_key(self, api_key: str) -> User | None:
        """The key's owner, found by the key's hash (see ``hash_key``), or None."""
        async with self._session() as session:
            found = await session.scalars(select(User).where(User.key_hash == hash_key(api_key)))
            return found.first()

    async def rotate_key(self, user_id: str) -> str | None:
        """A new API key for the user (the old one stops working), or None: no such user."""
        api_key = new_api_key()
        async with self._session() as session:
            user = await session.get(User, user_id)
            if user is None:
                return None
            user.key_hash, user.key_prefix = hash_key(api_key), api_key[:8]
            await session.commit()
        return api_key

    async def delete_user(self, user_id: str) -> bool:
        """Delete the user and their sessions; their audit trail stays. False when there was no
        such user."""
        async with self._session() as session:
            query = delete(User).where(User.id == user_id).returning(User.id)
            deleted = await session.scalar(query)
            await session.commit()
            return deleted is not None
