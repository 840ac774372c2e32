"""/metrics labels each request with the route it matched, whatever the method."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Live

pytestmark = pytest.mark.docker


def test_requests_are_labelled_with_their_route(server: Live) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        key = http.post("/v1/users", json={"name": "counted"}, headers=admin).json()["api_key"]
        user = {"Authorization": f"Bearer {key}"}
        assert http.get("/v1/me", headers=user).status_code == 200
        put = http.put("/v1/files/raw", params={"path": "a.txt"}, content=b"a", headers=user)
        assert put.status_code == 201
        assert http.delete("/v1/files", params={"path": "a.txt"}, headers=user).status_code == 204
        assert http.post("/v1/nowhere", json={}).status_code == 404
        text = http.get("/metrics").text
    seen = {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for family in text_string_to_metric_families(text)
        if family.name == "agentcell_http_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert {
        ("POST", "/v1/users", "201"),
        ("GET", "/v1/me", "200"),
        ("PUT", "/v1/files/raw", "201"),
        ("DELETE", "/v1/files", "204"),
        ("POST", "unmatched", "404"),
    } <= seen
    assert ("POST", "unmatched", "201") not in seen


def test_cells_by_state_and_reaper_errors_are_exported(server: Live) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        key = http.post("/v1/users", json={"name": "metered"}, headers=admin).json()["api_key"]
        exec_ = http.post(
            "/v1/cell/exec", json={"code": "print(1)"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert exec_.status_code == 200, exec_.text
        text = http.get("/metrics").text
    samples = {
        (s.name, s.labels.get("state", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("agentcell_cells", "running")] == 1
    assert samples[("agentcell_reaper_errors_total", "")] == 0
