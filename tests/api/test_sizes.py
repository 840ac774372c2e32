"""Unbounded sizes: a folder of 65,000 files is listed page by page, and a sparse 1 TiB file is
refused as a download and as part of a ZIP, with the limit in words, before anything streams."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from agentcell.client import Client
from tests.conftest import Live, ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker

FILES = 65_000
NAME = "{:05d}-" + "n" * 60  # long enough that one message for all of them was too large


@pytest.fixture
def big(make_server: ServerFactory, make_settings: SettingsFactory) -> Iterator[tuple[Live, str]]:
    # 2 GiB: enough inodes for 65,000 files, and 4 KiB blocks so that a 1 TiB file can exist
    settings = make_settings(limits={"workspace_mb": 2048}, max_upload_bytes=2**20)
    with make_server(settings) as live, httpx.Client(base_url=live.url, timeout=300) as http:
        admin = {"Authorization": f"Bearer {live.admin_token}"}
        key = http.post("/v1/users", json={"name": "hoarder"}, headers=admin).json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        code = (
            "import os\nos.mkdir('/workspace/many')\n"
            f"for i in range({FILES}):\n"
            f"    open('/workspace/many/' + {NAME!r}.format(i), 'w').close()\n"
        )
        sparse = "mkdir huge && truncate -s 1T huge/sparse.bin"
        for made in (
            http.post("/v1/cell/exec", json={"code": code, "timeout_s": 300}, headers=auth),
            http.post("/v1/cell/exec", json={"language": "shell", "code": sparse}, headers=auth),
        ):
            assert made.status_code == 200, made.text
            assert made.json()["exit_code"] == 0, made.text
        yield live, key


def test_a_folder_of_65000_files_is_listed_page_by_page(big: tuple[Live, str]) -> None:
    live, key = big
    with Client(live.url, api_key=key) as client:
        listing = client.files_list("many")
    names = [e.name for e in listing.entries]
    assert names == [NAME.format(i) for i in range(FILES)]
    assert listing.next_cursor is None
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=live.url, timeout=60) as http:
        first = http.get("/v1/files", params={"path": "many", "limit": 500}, headers=auth).json()
        assert [e["name"] for e in first["entries"]] == names[:500]
        params = {"path": "many", "limit": 500, "cursor": first["next_cursor"]}
        second = http.get("/v1/files", params=params, headers=auth).json()
        assert [e["name"] for e in second["entries"]] == names[500:1000]
        too_many = http.get("/v1/files", params={"path": "many", "limit": 10**6}, headers=auth)
        assert too_many.status_code == 422
        bogus = http.get("/v1/files", params={"path": "many", "cursor": "!!"}, headers=auth)
        assert bogus.status_code == 400, bogus.text[:300]
        assert "cursor" in bogus.json()["error"]["message"]


def test_a_sparse_terabyte_is_refused_before_streaming(big: tuple[Live, str]) -> None:
    live, key = big
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=live.url, timeout=60) as http:
        raw = http.get("/v1/files/raw", params={"path": "huge/sparse.bin"}, headers=auth)
        assert raw.status_code == 413, raw.text[:200]
        error = raw.json()["error"]
        assert error["code"] == "file_too_large"
        assert error["message"] == "huge/sparse.bin is 1.0 TiB; downloads are limited to 4.0 GiB"
        assert "AGENTCELL_MAX_DOWNLOAD_BYTES" in error["hint"]
        zipped = http.get("/v1/files/zip", params={"path": "huge"}, headers=auth)
        assert zipped.status_code == 413, zipped.text[:200]
        assert "more than 4.0 GiB, the limit of a ZIP" in zipped.json()["error"]["message"]
        # the cell is free again: the refused calls hold nothing
        assert http.get("/v1/files", params={"path": "huge"}, headers=auth).status_code == 200
