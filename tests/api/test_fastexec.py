"""``POST /v1/cell/exec`` as JSON has a fast path (api/fastexec.py) beside its route: both must
answer alike. The cookie of the web page goes through the route, a known key through the fast
path; every case is sent both ways to the same cell and the answers compared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentcell.api.fastexec import FastExec
from tests.conftest import Live

pytestmark = pytest.mark.docker

VARYING = {"duration_ms"}


def fast_path(live: Live) -> FastExec:
    assert live.app is not None
    layer: Any = live.app.middleware_stack
    while not isinstance(layer, FastExec):
        layer = layer.app
    return layer


@pytest.fixture
def both(server: Live) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(a client with the key, one with the web page's cookie and CSRF token), same user."""
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60) as keyed:
        key = keyed.post("/v1/users", json={"name": "fast"}, headers=admin).json()["api_key"]
        keyed.headers["Authorization"] = f"Bearer {key}"
        keyed.get("/v1/me").raise_for_status()  # the gate knows the key from now on
        with httpx.Client(base_url=server.url, timeout=60) as browser:
            csrf = browser.post("/v1/session", json={"api_key": key}).json()["csrf_token"]
            browser.headers["X-CSRF-Token"] = csrf
            yield keyed, browser


def comparable(answer: httpx.Response) -> tuple[int, str, dict[str, Any]]:
    body = answer.json()
    return (
        answer.status_code,
        answer.headers["content-type"],
        {k: ("…" if k in VARYING else v) for k, v in body.items()},
    )


@pytest.mark.parametrize(
    "body",
    [
        {"code": "print(1)"},
        {"code": "import sys; print('to err', file=sys.stderr); sys.exit(3)"},
        {"code": "echo hi; exit 4", "language": "shell"},
        {"code": "x = 41", "context": "kept"},
        {"code": "import time; time.sleep(5)", "timeout_s": 0.3},
        {"code": "print('é' * 3)"},
        {"code": "print(1)", "timeout_s": 100000},  # above the deployment's maximum: 400
        {"code": "print(1)", "language": "cobol"},  # refused by validation: 422
        {"code": ""},
        {"code": "print(1)", "extra": True},
    ],
)
def test_the_fast_path_answers_as_the_route_does(
    server: Live, both: tuple[httpx.Client, httpx.Client], body: dict[str, Any]
) -> None:
    keyed, browser = both
    before = fast_path(server).answered
    fast, routed = keyed.post("/v1/cell/exec", json=body), browser.post("/v1/cell/exec", json=body)
    assert comparable(fast) == comparable(routed)
    validated = fast.status_code != 422
    assert fast_path(server).answered == before + validated  # a 422 is the route's own


def test_state_is_shared_across_both_paths(both: tuple[httpx.Client, httpx.Client]) -> None:
    keyed, browser = both
    keyed.post("/v1/cell/exec", json={"code": "n = 6"}).raise_for_status()
    assert browser.post("/v1/cell/exec", json={"code": "print(n * 7)"}).json()["stdout"] == "42\n"


def test_metrics_and_headers_are_those_of_the_route(
    both: tuple[httpx.Client, httpx.Client],
) -> None:
    keyed, _ = both
    answer = keyed.post("/v1/cell/exec", json={"code": "pass"})
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    scrape = keyed.get("/metrics").text
    assert 'agentcell_http_requests_total{method="POST",route="/v1/cell/exec",status="200"}' in (
        scrape
    )


def test_sse_the_admin_and_unknown_keys_take_the_route(server: Live) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        refused = http.post("/v1/cell/exec", json={"code": "pass"}, headers=admin)
        assert refused.status_code == 403
        wrong = http.post(
            "/v1/cell/exec", json={"code": "pass"}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        key = http.post("/v1/users", json={"name": "sse"}, headers=admin).json()["api_key"]
        mine = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        for _ in range(2):  # the second time the gate knows the key
            streamed = http.post("/v1/cell/exec", json={"code": "print(2)"}, headers=mine)
            assert streamed.headers["content-type"].startswith("text/event-stream")
            assert "event: exit" in streamed.text
    assert fast_path(server).answered == 0


def test_another_users_key_reaches_only_its_own_cell(server: Live) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        a, b = (
            {
                "Authorization": "Bearer "
                + http.post("/v1/users", json={"name": n}, headers=admin).json()["api_key"]
            }
            for n in ("fa", "fb")
        )
        for who in (a, b, a, b):  # twice: the second round is the fast path's
            http.post("/v1/cell/exec", json={"code": "import os"}, headers=who)
        http.post("/v1/cell/exec", json={"code": "secret = 'of a'"}, headers=a)
        peek = http.post("/v1/cell/exec", json={"code": "print(secret)"}, headers=b).json()
        assert "NameError" in peek["stderr"]
        mine = http.post("/v1/cell/exec", json={"code": "print(secret)"}, headers=a).json()
        assert mine["stdout"] == "of a\n"
    assert fast_path(server).answered >= 4
