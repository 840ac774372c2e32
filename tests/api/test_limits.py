"""Fair sharing through the live server: per-user request rates, lifecycle churn, and how many
calls one user may have running at once. Another user always still gets through."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Live, ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker


def _users(live: Live, *names: str) -> list[dict[str, str]]:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    with httpx.Client(base_url=live.url, timeout=60) as http:
        keys = [http.post("/v1/users", json={"name": n}, headers=admin).json() for n in names]
    return [{"Authorization": f"Bearer {k['api_key']}"} for k in keys]


@pytest.fixture
def strict(make_server: ServerFactory, make_settings: SettingsFactory) -> Iterator[Live]:
    settings = make_settings(
        rate_limit_per_s=0.5, rate_limit_burst=5, lifecycle_limit_per_min=1, lifecycle_burst=2
    )
    with make_server(settings) as live:
        yield live


def test_a_user_over_the_request_rate_gets_429_and_others_do_not(strict: Live) -> None:
    greedy, calm = _users(strict, "greedy", "calm")
    with httpx.Client(base_url=strict.url, timeout=60) as http:
        statuses = [http.get("/v1/me", headers=greedy).status_code for _ in range(12)]
        refused = http.get("/v1/me", headers=greedy)
        assert statuses[:5] == [200] * 5
        assert set(statuses[5:]) == {429}
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        error = refused.json()["error"]
        assert error["code"] == "rate_limited"
        assert "0.5 a second" in error["message"]
        assert "Retry-After" in error["hint"]
        assert http.get("/v1/me", headers=calm).status_code == 200
        # A known key's refusals come from the gate, before routing (api/gate.py).
        gated = 'route="(rate limited)",status="429"'
        assert gated in http.get("/metrics").text
        assert http.get("/healthz", headers=greedy).status_code == 200  # not limited by key
        admin = {"Authorization": f"Bearer {strict.admin_token}"}
        for _ in range(10):  # the admin, /healthz and /metrics are exempt
            assert http.get("/v1/users", headers=admin).status_code == 200
            assert http.get("/healthz").status_code == 200
            assert http.get("/metrics").status_code == 200


def test_restart_and_delete_churn_is_limited(strict: Live) -> None:
    churner, neighbour = _users(strict, "churner", "neighbour")
    with httpx.Client(base_url=strict.url, timeout=120) as http:
        assert http.delete("/v1/cell", headers=churner).status_code == 204
        assert http.post("/v1/cell/restart", headers=churner).status_code == 200
        again = http.delete("/v1/cell", headers=churner)
        assert again.status_code == 429, again.text
        assert "cell restarts and deletes" in again.json()["error"]["message"]
        assert int(again.headers["Retry-After"]) >= 1
        assert http.post("/v1/cell/restart", headers=churner).status_code == 429
        assert http.get("/v1/cell", headers=churner).status_code == 200  # other calls still go
        assert http.delete("/v1/cell", headers=neighbour).status_code == 204


async def test_one_user_cannot_run_unbounded_execs_at_once(server: Live) -> None:
    busy, other = _users(server, "busy", "other")
    limit = server.settings.max_running_per_user
    sleeper = {"language": "shell", "code": "sleep 5", "timeout_s": 60}
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        for headers in (busy, other):  # start both cells first
            warm = await http.post("/v1/cell/exec", json={"code": "1"}, headers=headers)
            assert warm.status_code == 200
        crowd = [http.post("/v1/cell/exec", json=sleeper, headers=busy) for _ in range(100)]
        tasks = [asyncio.ensure_future(call) for call in crowd]
        async with asyncio.timeout(60):  # the refused ones answer at once
            while sum(t.done() for t in tasks) < 100 - limit:
                await asyncio.sleep(0.05)
        through = await http.post(
            "/v1/cell/exec", json={"language": "shell", "code": "echo hi"}, headers=other
        )
        answers = await asyncio.gather(*tasks)
    assert through.status_code == 200, through.text
    assert through.json()["stdout"] == "hi\n"
    assert Counter(r.status_code for r in answers) == {200: limit, 429: 100 - limit}
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["Retry-After"] == "1"
    assert f"the limit is {limit} at once" in refused.json()["error"]["message"]
