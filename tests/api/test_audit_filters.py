"""The audit log's filters: the admin narrows it to one user and a time window; a user's own
trail is all a user ever gets, whatever they ask for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.test_sessions import add_user
from tests.conftest import Live

pytestmark = pytest.mark.docker


def events(http: httpx.Client, **params: str) -> list[dict[str, str]]:
    answer = http.get("/v1/audit", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["events"])


def test_the_admin_filters_by_user_and_time(server: Live) -> None:
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}
    )
    with admin, add_user(server, "alice") as alice, add_user(server, "bob") as bob:
        alice_id, bob_id = (c.get("/v1/me").json()["id"] for c in (alice, bob))
        start = datetime.now(UTC)
        alice.put("/v1/files/raw", params={"path": "a.txt"}, content=b"a")
        bob.put("/v1/files/raw", params={"path": "b.txt"}, content=b"b")
        only_alice = events(admin, user=alice_id, kind="file")
        assert [e["target"] for e in only_alice] == ["a.txt"]
        assert {e["user_id"] for e in events(admin, kind="file")} == {alice_id, bob_id}
        after = events(admin, kind="file", since=start.isoformat())
        assert {e["target"] for e in after} == {"a.txt", "b.txt"}
        assert events(admin, kind="file", until=start.isoformat()) == []
        later = (start + timedelta(hours=1)).isoformat()
        assert events(admin, kind="file", since=later) == []
        # Alice asking for Bob's trail gets nothing of his; her own she gets.
        assert events(alice, user=bob_id) == []
        assert [e["target"] for e in events(alice, user=alice_id, kind="file")] == ["a.txt"]
        assert alice.get("/v1/audit", params={"since": "yesterday"}).status_code == 422
        bad = alice.get("/v1/audit", params={"since": "2026-13-40T99"})
        assert "not a time" in bad.json()["error"]["message"]
        naive = events(admin, kind="file", since=start.replace(tzinfo=None).isoformat())
        assert len(naive) == 2  # a time without its offset is UTC
