"""Exec over HTTP the way the README shows it: curl's `-d` (a form content type) with SSE."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Live

pytestmark = pytest.mark.docker


def test_the_readme_curl_example_streams_sse(server: Live) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        key = http.post("/v1/users", json={"name": "curl"}, headers=admin).json()["api_key"]
        body = '{"language":"shell","code":"for i in 1 2 3; do echo $i; sleep 0.1; done"}'
        headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "text/event-stream",
            "Content-Type": "application/x-www-form-urlencoded",  # what `curl -d` sends
        }
        with http.stream("POST", "/v1/cell/exec", content=body, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            blocks = [b for b in r.read().decode().split("\n\n") if b]
    events = [
        (lines[0].removeprefix("event: "), json.loads(lines[1].removeprefix("data: ")))
        for lines in (block.split("\n") for block in blocks)
    ]
    assert [e for e, _ in events] == ["stdout", "stdout", "stdout", "exit"]
    assert "".join(d["data"] for e, d in events if e == "stdout") == "1\n2\n3\n"
    assert events[-1][1]["exit_code"] == 0
