"""Every endpoint × every kind of caller → status. Another user's things answer 404, never 403.

The matrix must name every route the app serves: a new endpoint without a row fails here."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import Live
from tests.waiting import wait_until

pytestmark = pytest.mark.docker

CALLERS = ("owner", "other", "anonymous", "wrong_key", "admin")
MCP_HELLO = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}


@dataclass(frozen=True)
class Row:
    method: str
    # may hold {victim} (the owner's user id), {spare} (a user the admin may delete) and
    # {session} (a chat session of the owner's), {kept} (a process the owner's background exec
    # kept running), {job} / {ended} (a running and an ended job of the owner's), {schedule},
    # {port} / {path} (a port a web server of the owner's listens on, and a file it serves),
    # {terminal} (a terminal of the owner's)
    path: str
    expect: tuple[int, int, int, int, int]  # owner, other, anonymous, wrong key, admin
    params: tuple[tuple[str, str], ...] = ()
    json: object = None
    content: bytes | None = None


A, U = 401, 403  # anonymous / wrong key, and forbidden for the wrong role


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, data)
    return buf.getvalue()


OTHER_METHODS = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MATRIX: tuple[Row, ...] = (
    Row("GET", "/healthz", (200, 200, 200, 200, 200)),
    Row("GET", "/metrics", (200, 200, 200, 200, 200)),
    Row("GET", "/v1/me", (200, 200, A, A, 200)),
    # The web page's sign-in: the key is in the body; a header key signs nothing in or out.
    Row("POST", "/v1/session", (A, A, A, A, A), json={"api_key": "ac_" + "x" * 43}),
    Row("GET", "/v1/session", (A, A, A, A, A)),
    Row("DELETE", "/v1/session", (400, 400, A, A, 400)),
    Row("POST", "/v1/me/key", (200, 200, A, A, U)),
    Row("POST", "/v1/users/{spare}/key", (U, U, A, A, 200)),
    Row("POST", "/v1/users/{victim}/key", (U, U, A, A, 404), params=(("x", "x"),)),
    Row("POST", "/v1/admin/token", (U, U, A, A, 200)),
    Row("GET", "/v1/cell", (200, 200, A, A, U)),
    Row("POST", "/v1/cell/exec", (200, 200, A, A, U), json={"code": "print(1)"}),
    # The owner's file: the other user looks in their own workspace and finds nothing.
    Row("GET", "/v1/files", (200, 404, A, A, U), params=(("path", "secret.txt"),)),
    Row("GET", "/v1/files/raw", (200, 404, A, A, U), params=(("path", "secret.txt"),)),
    Row("GET", "/v1/files/zip", (200, 404, A, A, U), params=(("path", "private"),)),
    Row("PUT", "/v1/files/raw", (201, 201, A, A, U), params=(("path", "new.txt"),), content=b"x"),
    # Into the owner's folder: the other user unpacks into a folder of that name of their own.
    Row(
        "POST",
        "/v1/files/extract",
        (201, 201, A, A, U),
        params=(("path", "private"),),
        content=_zip("unpacked.txt", b"x"),
    ),
    Row("DELETE", "/v1/files", (204, 404, A, A, U), params=(("path", "doomed.txt"),)),
    Row("GET", "/v1/audit", (200, 200, A, A, 200)),
    # The owner's session: another user gets 404, as for a session that does not exist.
    Row("POST", "/v1/sessions", (201, 201, A, A, U), json={"title": "mine"}),
    Row("GET", "/v1/sessions", (200, 200, A, A, U)),
    Row("GET", "/v1/sessions/{session}", (200, 404, A, A, U)),
    Row("GET", "/v1/sessions/{session}/messages", (200, 404, A, A, U)),
    Row("POST", "/v1/sessions/{session}/messages", (200, 404, A, A, U), json={"content": "hi"}),
    Row("DELETE", "/v1/sessions/{session}", (204, 404, A, A, U)),
    # The owner's kept process: another user's cell has no such process.
    Row("GET", "/v1/cell/processes", (200, 200, A, A, U)),
    Row("DELETE", "/v1/cell/processes/{kept}", (204, 404, A, A, U)),
    Row("POST", "/v1/cell/restart", (200, 200, A, A, U)),
    Row("DELETE", "/v1/cell", (204, 204, A, A, U)),
    # The owner's jobs (one running, one ended) and schedule: another user's are not found.
    Row("POST", "/v1/jobs", (201, 201, A, A, U), json={"kind": "exec", "code": "print(1)"}),
    Row("GET", "/v1/jobs", (200, 200, A, A, U)),
    Row("GET", "/v1/jobs/{job}", (200, 404, A, A, U)),
    Row("GET", "/v1/jobs/{job}/logs", (200, 404, A, A, U)),
    Row("GET", "/v1/jobs/{job}/artifacts", (200, 404, A, A, U)),
    Row("POST", "/v1/jobs/{job}/cancel", (200, 404, A, A, U)),
    Row("POST", "/v1/jobs/{ended}/retry", (201, 404, A, A, U)),
    Row("DELETE", "/v1/jobs/{job}", (204, 404, A, A, U)),
    Row("GET", "/v1/schedules", (200, 200, A, A, U)),
    Row("GET", "/v1/schedules/{schedule}", (200, 404, A, A, U)),
    Row("POST", "/v1/schedules/{schedule}/pause", (200, 404, A, A, U)),
    Row("POST", "/v1/schedules/{schedule}/resume", (200, 404, A, A, U)),
    Row("DELETE", "/v1/schedules/{schedule}", (204, 404, A, A, U)),
    # Egress: each user has a policy and secrets of their own; the owner's secret is not found
    # by another user (they would delete their own of that name, which they do not have).
    Row("GET", "/v1/cell/network", (200, 200, A, A, U)),
    Row(
        "PUT",
        "/v1/cell/network",
        (200, 200, A, A, U),
        json={"mode": "allowlist", "allow": ["a.org"]},
    ),
    Row("DELETE", "/v1/cell/network", (200, 200, A, A, U)),
    Row("GET", "/v1/secrets", (200, 200, A, A, U)),
    Row(
        "PUT", "/v1/secrets/{secret}", (200, 200, A, A, U), json={"value": "v", "hosts": ["a.org"]}
    ),
    Row("DELETE", "/v1/secrets/{secret}", (204, 404, A, A, U)),
    # Ports: a URL names a port of the caller's own cell; the other user's has nothing there.
    Row("GET", "/v1/cell/ports", (200, 200, A, A, U)),
    Row("POST", "/v1/cell/port-tokens", (200, 200, A, A, U), json={"port": 8765}),
    Row("GET", "/v1/cell/ports/{port}/{path}", (200, 502, A, A, U)),
    Row("HEAD", "/v1/cell/ports/{port}/{path}", (200, 502, A, A, U)),
    # The owner's server (python3 -m http.server) implements only GET and HEAD.
    *(Row(m, "/v1/cell/ports/{port}/{path}", (501, 502, A, A, U)) for m in OTHER_METHODS),
    # The desktop and JupyterLab are in the full image; these cells run the minimal one (400).
    Row("GET", "/v1/cell/desktop", (400, 400, A, A, U)),
    Row("POST", "/v1/cell/jupyter", (400, 400, A, A, U)),
    # Terminals: the owner's, detached, is not found from the other user's cell.
    Row("GET", "/v1/cell/terminals", (200, 200, A, A, U)),
    Row("POST", "/v1/cell/terminal-tokens", (200, 200, A, A, U)),
    Row("DELETE", "/v1/cell/terminals/{terminal}", (200, 404, A, A, U)),
    Row("GET", "/v1/admin/network", (U, U, A, A, 200)),
    Row("PUT", "/v1/admin/network", (U, U, A, A, 200), json={"ceiling": "allowlist"}),
    Row("GET", "/v1/users", (U, U, A, A, 200)),
    Row("POST", "/v1/users", (U, U, A, A, 201), json={"name": "newcomer"}),
    Row("DELETE", "/v1/users/{spare}", (U, U, A, A, 204)),
    Row("DELETE", "/v1/users/{victim}", (U, U, A, A, 404), params=(("x", "x"),)),
    Row("GET", "/v1/admin/cells", (U, U, A, A, 200)),
    Row("POST", "/v1/admin/cells/reap", (U, U, A, A, 200)),
    Row("POST", "/v1/admin/cells/{victim}/pause", (U, U, A, A, 404)),
    Row("POST", "/v1/admin/cells/{victim}/stop", (U, U, A, A, 404)),
    Row("POST", "/v1/admin/cells/{victim}/remove", (U, U, A, A, 404)),
    # MCP: a user's key opens their own cell's tools (tests/api/test_mcp.py goes further).
    Row(
        "POST",
        "/mcp",
        (200, 200, A, A, U),
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": MCP_HELLO},
    ),
)
UNCHECKED_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@dataclass
class World:
    http: httpx.Client
    headers: dict[str, dict[str, str]]
    victim: str  # the owner's user id
    spare: str
    session: str  # a chat session of the owner's
    kept: int  # a process the owner's background exec kept
    job: str  # a running job of the owner's
    ended: str  # an ended job of the owner's
    schedule: str
    secret: str = "OWNER_TOKEN"  # a secret of the owner's
    port: int = 8765  # where a web server of the owner's listens
    terminal: str = ""  # a terminal of the owner's, detached

    def call(self, row: Row, caller: str) -> httpx.Response:
        path = row.path.format(
            victim=self.victim,
            spare=self.spare,
            session=self.session,
            kept=self.kept,
            job=self.job,
            ended=self.ended,
            schedule=self.schedule,
            secret=self.secret,
            port=self.port,
            path="a.txt",
            terminal=self.terminal,
        )
        return self.http.request(
            row.method,
            path,
            params=dict(row.params),
            json=row.json,
            content=row.content,
            headers=self.headers[caller],
        )


def _key_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def world(chat_server: Live) -> Iterator[World]:
    server = chat_server  # chat turns answer with a scripted model
    admin = _key_headers(server.admin_token)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        users = {
            name: http.post("/v1/users", json={"name": name}, headers=admin).json()
            for name in ("owner", "other", "spare")
        }
        owner = _key_headers(users["owner"]["api_key"])
        for path, body in (
            ("secret.txt", b"owner only"),
            ("doomed.txt", b"x"),
            ("private/a.txt", b"a"),
        ):
            http.put("/v1/files/raw", params={"path": path}, content=body, headers=owner)
        session = http.post("/v1/sessions", json={"title": "owner's"}, headers=owner).json()
        job = {"code": "sleep 300 & echo $!", "language": "shell", "background": True}
        kept = int(http.post("/v1/cell/exec", json=job, headers=owner).json()["stdout"])
        jobs = {
            name: http.post(
                "/v1/jobs", json={"kind": "exec", "language": "shell", "code": code}, headers=owner
            ).json()["id"]
            for name, code in (("running", "sleep 300"), ("ended", "true"))
        }

        def state(job_id: str) -> str:
            return str(http.get(f"/v1/jobs/{job_id}", headers=owner).json()["state"])

        wait_until("one job runs", lambda: state(jobs["running"]) == "running")
        wait_until("one job has ended", lambda: state(jobs["ended"]) == "succeeded")
        cron = {"kind": "exec", "code": "print(1)", "schedule": {"cron": "0 7 * * *"}}
        schedule = http.post("/v1/jobs", json=cron, headers=owner).json()["id"]
        serve = "python3 -m http.server 8765 --bind 127.0.0.1 --directory private >/dev/null 2>&1"
        web = {"code": serve + " &", "language": "shell", "background": True}
        assert http.post("/v1/cell/exec", json=web, headers=owner).status_code == 200
        wait_until(
            "the owner's web server listens",
            lambda: http.get("/v1/cell/ports/8765/a.txt", headers=owner).status_code == 200,
        )
        terminal_url = server.url.replace("http://", "ws://") + "/v1/cell/terminal"
        with connect(terminal_url, additional_headers=owner) as ws:
            terminal = json.loads(ws.recv(timeout=60))["session"]
        secret = {"value": "owner's value", "hosts": ["api.example.com"]}
        assert http.put("/v1/secrets/OWNER_TOKEN", json=secret, headers=owner).status_code == 200
        yield World(
            http=http,
            headers={
                "owner": owner,
                "other": _key_headers(users["other"]["api_key"]),
                "anonymous": {},
                "wrong_key": _key_headers("ac_" + "x" * 43),
                "admin": admin,
            },
            victim="u_doesnotexist",
            spare=users["spare"]["id"],
            session=session["id"],
            kept=kept,
            job=jobs["running"],
            ended=jobs["ended"],
            schedule=schedule,
            terminal=terminal,
        )


def test_the_matrix_covers_every_route(server: Live) -> None:
    with httpx.Client(base_url=server.url) as http:
        spec = http.get("/openapi.json").json()
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    placeholders = {
        "{spare}": "{user_id}",
        "{victim}": "{user_id}",
        "{session}": "{session_id}",
        "{kept}": "{pid}",
        "{job}": "{job_id}",
        "{ended}": "{job_id}",
        "{schedule}": "{schedule_id}",
        "{secret}": "{name}",
        "{terminal}": "{terminal_id}",
    }
    covered = set()
    for row in MATRIX:
        path = row.path
        for ours, served_as in placeholders.items():
            path = path.replace(ours, served_as)
        covered.add((row.method, path))
    assert served - covered == set(), "add rows to MATRIX for these endpoints"


@pytest.mark.parametrize("row", MATRIX, ids=lambda r: f"{r.method} {r.path}")
def test_every_endpoint_for_every_caller(world: World, row: Row) -> None:
    # Callers go in an order where destructive calls by the owner come after the others.
    order = ("anonymous", "wrong_key", "other", "admin", "owner")
    got = {}
    for caller in order:
        response = world.call(row, caller)
        got[caller] = response.status_code
        relayed = caller == "owner" and row.path.startswith("/v1/cell/ports/{port}/")
        if response.status_code >= 400 and row.method != "HEAD" and not relayed:
            assert set(response.json()) == {"error"}, response.text  # ours, not the cell's
    assert got == dict(zip(CALLERS, row.expect, strict=True))


def test_other_users_never_see_the_owners_data(world: World) -> None:
    other = world.headers["other"]
    listing = world.http.get("/v1/files", params={"path": "."}, headers=other).json()
    assert listing["entries"] == [] or all(e["name"] != "secret.txt" for e in listing["entries"])
    peek = world.http.post(
        "/v1/cell/exec",
        json={"language": "shell", "code": "ls -R /workspace; cat /workspace/secret.txt"},
        headers=other,
    ).json()
    assert "owner only" not in peek["stdout"]
    audit = world.http.get("/v1/audit", headers=other).json()["events"]
    assert all(e["action"] != "file.write" or e["target"] != "secret.txt" for e in audit)
    owner_id = world.http.get("/v1/me", headers=world.headers["owner"]).json()["id"]
    assert all(e["user_id"] != owner_id for e in audit)
