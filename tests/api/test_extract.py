"""``POST /v1/files/extract``: an archive uploaded and unpacked into a folder of the caller's
workspace, inside their cell, on a live server; refusals in the one error shape, naming the
entry; nothing of a refused archive left behind; the clients and the CLI."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentcell.cli import main
from agentcell.client import AsyncClient, Client
from agentcell.errors import UnsafeArchive
from tests.conftest import Live, ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker

FILES = {"README.md": b"# proj\n", "src/main.py": b"print('hi')\n", "src/data/n.csv": b"1,2\n"}
TOTAL = sum(map(len, FILES.values()))


def a_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def a_tar_gz(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name in links:
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
            tf.addfile(link)
    return buf.getvalue()


def keyed(http: httpx.Client, live: Live, name: str) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    key = http.post("/v1/users", json={"name": name}, headers=admin).json()["api_key"]
    return {"Authorization": f"Bearer {key}"}


def names(http: httpx.Client, auth: dict[str, str], path: str = ".") -> list[str]:
    listing = http.get("/v1/files", params={"path": path}, headers=auth)
    assert listing.status_code == 200, listing.text
    return sorted(e["name"] for e in listing.json()["entries"])


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "hint", "message"]
    assert body["error"]["code"] == code
    return dict(body["error"])


@pytest.fixture
def http(server: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def test_an_archive_is_unpacked_listed_and_downloaded(server: Live, http: httpx.Client) -> None:
    alice, bob = keyed(http, server, "alice"), keyed(http, server, "bob")
    body = a_tar_gz(FILES)
    done = http.post("/v1/files/extract", params={"path": "proj"}, content=body, headers=alice)
    assert done.status_code == 201, done.text
    assert done.json() == {"path": "proj", "entries": 3, "bytes": TOTAL}
    assert names(http, alice, "proj") == ["README.md", "src"]
    assert names(http, alice, "proj/src") == ["data", "main.py"]
    raw = http.get("/v1/files/raw", params={"path": "proj/src/main.py"}, headers=alice)
    assert raw.content == FILES["src/main.py"]
    zipped = http.get("/v1/files/zip", params={"path": "proj"}, headers=alice)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == FILES
    replacing = a_zip({"README.md": b"replaced\n"})
    again = http.post(
        "/v1/files/extract", params={"path": "proj"}, content=replacing, headers=alice
    )
    assert again.status_code == 201, again.text
    raw = http.get("/v1/files/raw", params={"path": "proj/README.md"}, headers=alice)
    assert raw.content == b"replaced\n"  # files are replaced, the rest is kept
    assert names(http, alice, "proj") == ["README.md", "src"]
    events = http.get("/v1/audit", headers=alice).json()["events"]
    extracts = [e for e in events if e["action"] == "file.extract"]
    assert [(e["target"], e["detail"]) for e in extracts][-1] == (
        "proj",
        f"3 entries, {TOTAL} bytes",
    )
    # bob's workspace is his own: alice's files are not there, nor in his audit log
    assert http.get("/v1/files", params={"path": "proj"}, headers=bob).status_code == 404
    peek = {"language": "shell", "code": "ls -R /workspace"}
    assert "main.py" not in http.post("/v1/cell/exec", json=peek, headers=bob).json()["stdout"]
    bobs = http.get("/v1/audit", headers=bob).json()["events"]
    assert all(e["action"] != "file.extract" for e in bobs)
    assert names(http, alice) == ["proj"]  # no staging folder is left at the top


def test_refusals_name_the_entry_and_leave_nothing(server: Live, http: httpx.Client) -> None:
    auth = keyed(http, server, "carol")

    def extract(content: object, path: str = "out") -> httpx.Response:
        return http.post("/v1/files/extract", params={"path": path}, content=content, headers=auth)

    evil = assert_error(extract(a_zip({"ok.txt": b"x", "../evil": b"x"})), 400, "unsafe_archive")
    assert evil["message"] == "entry '../evil' escapes the folder"
    assert evil["hint"]
    link = assert_error(extract(a_tar_gz({"ok.txt": b"x"}, ("shadow",))), 400, "unsafe_archive")
    assert link["message"] == "entry 'shadow' is a symbolic link; links are not unpacked"
    junk = assert_error(extract(b"PNG? no: just bytes " * 50), 400, "invalid_archive")
    assert "neither a ZIP nor a tar" in junk["message"]
    assert ".tar.gz" in junk["hint"]
    bomb = assert_error(extract(a_zip({"zeros": bytes(20 * 2**20)})), 413, "archive_too_large")
    assert "entry 'zeros' unpacks to 20.0 MiB" in bomb["message"]
    assert "AGENTCELL_MAX_EXTRACT_RATIO" in bomb["hint"]
    assert_error(extract(a_zip({"a": b"a"}), path="../up"), 400, "invalid_path")

    limit = server.settings.max_upload_bytes
    big = assert_error(extract(b"x" * (limit + 1)), 413, "too_large")
    assert "AGENTCELL_MAX_UPLOAD_BYTES" in big["hint"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced as bytes arrive
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    assert_error(extract(chunks()), 413, "too_large")
    assert names(http, auth) == []  # no folder, no staging left behind

    http.put("/v1/files/raw", params={"path": "out/src"}, content=b"a file", headers=auth)
    clash = assert_error(extract(a_zip({"new": b"n", "src/main.py": b"m"})), 409, "conflict")
    assert "entry 'src/main.py' needs 'src' as a folder" in clash["message"]
    assert names(http, auth, "out") == ["src"]


def test_a_full_workspace_is_a_clear_error(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    # 64 MiB of workspace; 100 MiB of zeros packs into about 100 KiB (no ratio check here)
    settings = make_settings(max_upload_bytes=2**20, max_extract_ratio=0)
    with make_server(settings) as live, httpx.Client(base_url=live.url, timeout=120) as http:
        auth = keyed(http, live, "dave")
        body = a_zip({"zeros.bin": bytes(100 * 2**20)})
        full = http.post("/v1/files/extract", params={"path": "z"}, content=body, headers=auth)
        error = assert_error(full, 507, "workspace_full")
        assert "no space left in the workspace at entry 'zeros.bin'" in error["message"]
        assert names(http, auth) == []
        # what the refused archive took is free again
        ok = http.put(
            "/v1/files/raw", params={"path": "after.bin"}, content=bytes(2**19), headers=auth
        )
        assert ok.status_code == 201, ok.text


async def test_the_clients_and_the_cli_unpack_a_local_archive(
    server: Live,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with server.admin() as admin:
        key = admin.users_add("erin").api_key
    archive = tmp_path / "proj.zip"
    archive.write_bytes(a_zip(FILES))
    with Client(server.url, api_key=key) as client:
        done = client.files_extract(archive, "sync")
        assert (done.path, done.entries) == ("sync", 3)
        assert client.files_extract(str(archive)).path == "."  # a str is a local path too
        assert client.files_get("src/main.py") == FILES["src/main.py"]
        with pytest.raises(UnsafeArchive, match="'/abs' is an absolute path"):
            client.files_extract(a_zip({"/abs": b"x"}), "nope")
    async with AsyncClient(server.url, api_key=key) as aclient:
        done = await aclient.files_extract(a_tar_gz(FILES), "async/")
        assert (done.path, done.bytes) == ("async", TOTAL)

    monkeypatch.setenv("AGENTCELL_URL", server.url)
    monkeypatch.setenv("AGENTCELL_API_KEY", key)
    assert main(["files", "extract", str(archive), "cli"]) == 0
    assert capsys.readouterr().out.strip() == f"cli: 3 entries, {TOTAL} bytes"
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(a_tar_gz({}, ("shadow",)))
    assert main(["files", "extract", str(evil), "cli"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: entry 'shadow' is a symbolic link"), err
    assert "hint: " in err
    with Client(server.url, api_key=key) as client:
        listing = client.files_list("cli")
        assert sorted(e.name for e in listing.entries) == ["README.md", "src"]
        assert "nope" not in [e.name for e in client.files_list(".").entries]
