"""The web page and the API reference are served whole from this server (no CDN): every file
they load answers, and their Content-Security-Policy allows no inline script."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from agentcell.api.routes.page import PAGE, VENDOR
from tests.conftest import Live

pytestmark = pytest.mark.docker

LOADED = re.compile(r'(?:src|href)="(/[^"]*)"')
IMPORTED = re.compile(r'from\s+"(/[^"]+)"')


def script_policy(policy: str) -> str:
    return next(d for d in policy.split(";") if d.strip().startswith("script-src"))


def test_the_page_loads_only_files_of_this_server(server: Live) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert script_policy(policy).split() == ["script-src", "'self'"]
        assert "frame-ancestors 'none'" in policy
        assert f"frame-src 'self' http://localhost:{urlsplit(server.url).port}" in policy
        assert "<script>" not in page.text  # scripts come from files only
        for path in LOADED.findall(page.text):
            if path != "data:,":
                assert http.get(path).status_code == 200, path
        for name in VENDOR:
            answer = http.get(f"/vendor/{name}")
            assert answer.status_code == 200, name
            assert len(answer.content) > 1000
        missing = http.get("/vendor/left-pad.js")
        assert missing.status_code == 404


def test_every_module_the_page_imports_is_served(server: Live) -> None:
    sources = sorted(PAGE.rglob("*.js"))
    views = {s.stem for s in sources if s.parent.name == "views"}
    assert {"chat", "files", "jobs", "terminal", "desktop", "cell", "network"} <= views
    assert {"users", "cells", "audit"} <= views  # the admin's
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for source in sources:
            served = http.get(f"/static/{source.relative_to(PAGE)}")
            assert served.status_code == 200, source
            for path in IMPORTED.findall(source.read_text()):
                assert http.get(path).status_code == 200, f"{source.name} imports {path}"


def test_nothing_of_the_page_comes_from_elsewhere() -> None:
    for file in sorted(PAGE.rglob("*")):
        if file.is_file():
            text = file.read_text()
            assert not re.search(r"""["'(]https?://""", text), f"{file}: an address elsewhere"


def test_the_api_reference_works_offline(server: Live) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path, needs in (("/docs", "/vendor/swagger-ui.js"), ("/redoc", "/vendor/redoc.js")):
            page = http.get(path)
            assert page.status_code == 200
            assert needs in page.text
            assert script_policy(page.headers["content-security-policy"]).split() == [
                "script-src",
                "'self'",
            ]
            for loaded in LOADED.findall(page.text):
                assert http.get(loaded).status_code == 200, loaded
        assert http.get("/openapi.json").json()["info"]["title"] == "agentcell"


def test_the_preview_address_sends_the_page_to_its_own(server: Live) -> None:
    port = urlsplit(server.url).port
    answer = httpx.get(f"{server.url}/", headers={"Host": f"localhost:{port}"})
    assert answer.status_code == 307
    assert answer.headers["location"] == f"http://127.0.0.1:{port}/"


def test_the_page_is_part_of_the_package() -> None:
    assert Path(PAGE, "index.html").is_file()
    assert PAGE.parent.name == "agentcell"
