"""/mcp through the official MCP SDK's client, against a live server and real cells: exec,
files, jobs, each in the caller's own cell; refused without a user's key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from agentcell.api.mcptools import READ_MAX
from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live

pytestmark = pytest.mark.docker

TOOLS = {
    "exec",
    "list_files",
    "read_file",
    "write_file",
    "delete_file",
    "job_start",
    "job_list",
    "job_status",
    "job_follow",
    "job_cancel",
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}


def key_of(http: httpx.Client) -> str:
    return http.headers["Authorization"].removeprefix("Bearer ")


def _http(key: str) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60, read=120))


@contextlib.asynccontextmanager
async def mcp_session(live: Live, key: str) -> AsyncIterator[ClientSession]:
    """A session of the SDK's client, opened with the initialize handshake."""
    async with (
        _http(key) as http,
        streamable_http_client(f"{live.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        hello = await session.initialize()  # what the clients of 2025 all do
        assert hello.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        assert hello.server_info.name == "agentcell"
        yield session


async def call(session: ClientSession | Client, tool: str, **arguments: Any) -> Any:
    """The tool's structured answer (a str-valued tool's is under "result")."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None, result.content
    return result.structured_content


async def refused(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The text of the tool error the call answers."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text = result.content[0]
    assert text.type == "text"
    return str(text.text)


async def follow(session: ClientSession, job_id: str) -> tuple[str, dict[str, Any]]:
    """All of the job's log, and the last answer of job_follow (ended)."""
    texts, offset = [], 0
    for _ in range(30):
        got = await call(session, "job_follow", job_id=job_id, offset=offset, wait_s=5)
        texts.append(got["text"])
        offset = got["offset"]
        if got["ended"]:
            return "".join(texts), got
    raise AssertionError(f"job {job_id} did not end")


async def test_the_tools_are_listed(server: Live) -> None:
    with add_user(server, "alice") as alice:
        async with mcp_session(server, key_of(alice)) as session:
            listed = await session.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    assert tools["exec"].input_schema["required"] == ["code"]
    assert "ctx" not in tools["exec"].input_schema["properties"]
    assert tools["read_file"].annotations is not None
    assert tools["read_file"].annotations.read_only_hint


async def test_exec_keeps_python_state_and_runs_shell(server: Live) -> None:
    with add_user(server, "alice") as alice:
        async with mcp_session(server, key_of(alice)) as session:
            await call(session, "exec", code="x = 41")
            got = await call(session, "exec", code="print(x + 1)")
            assert (got["stdout"], got["exit_code"], got["timed_out"]) == ("42\n", 0, False)
            other = await call(session, "exec", code="print('x' in dir())", context="other")
            assert other["stdout"] == "False\n"
            shell = await call(session, "exec", code="pwd; echo oops >&2; exit 3", language="shell")
            assert (shell["stdout"], shell["stderr"], shell["exit_code"]) == (
                "/workspace\n",
                "oops\n",
                3,
            )
            slow = await call(session, "exec", code="sleep 30", language="shell", timeout_s=0.5)
            assert slow["timed_out"]
            bad = await refused(session, "exec", code="print(1)", language="ruby")
            assert "language" in bad
        execs = alice.get("/v1/audit", params={"kind": "exec"}).json()["events"]
    assert len(execs) == 5
    assert {e["started_by"] for e in execs} == {"mcp"}  # audited as the API's are, said whence


async def test_files_round_trip_with_the_http_api(server: Live) -> None:
    with add_user(server, "alice") as alice:
        async with mcp_session(server, key_of(alice)) as session:
            written = await call(session, "write_file", path="notes/a.txt", content="héllo\n")
            assert written == {"path": "notes/a.txt", "size": 7}
            assert alice.get("/v1/files/raw", params={"path": "notes/a.txt"}).text == "héllo\n"
            put = alice.put("/v1/files/raw", params={"path": "notes/b.txt"}, content=b"from api")
            assert put.status_code == 201, put.text
            assert await call(session, "read_file", path="notes/b.txt") == {"result": "from api"}
            listed = await call(session, "list_files", path="notes")
            assert [(e["name"], e["type"]) for e in listed["entries"]] == [
                ("a.txt", "file"),
                ("b.txt", "file"),
            ]
            await call(session, "delete_file", path="notes/a.txt")
            gone = alice.get("/v1/files/raw", params={"path": "notes/a.txt"})
            assert_error(gone, 404, "not_found")
            still = await refused(session, "delete_file", path="notes")
            assert "recursive" in still.lower() or "not empty" in still.lower()
            await call(session, "delete_file", path="notes", recursive=True)
            assert (await call(session, "list_files"))["entries"] == []
        audit = alice.get("/v1/audit", params={"kind": "file"}).json()["events"]
    assert [(e["action"], e["target"]) for e in reversed(audit)] == [
        ("file.write", "notes/a.txt"),
        ("file.write", "notes/b.txt"),
        ("file.delete", "notes/a.txt"),
        ("file.delete", "notes"),
    ]


async def test_file_errors_say_what_to_do(server: Live) -> None:
    with add_user(server, "alice") as alice:
        alice.put("/v1/files/raw", params={"path": "blob.bin"}, content=b"\xff\xfe\x00binary")
        big = b"a" * (READ_MAX + 1)
        alice.put("/v1/files/raw", params={"path": "big.txt"}, content=big)
        async with mcp_session(server, key_of(alice)) as session:
            assert "not UTF-8 text" in await refused(session, "read_file", path="blob.bin")
            too_large = await refused(session, "read_file", path="big.txt")
            assert "(file_too_large)" in too_large
            assert "Hint: read a part" in too_large
            missing = await refused(session, "read_file", path="nope.txt")
            assert "(not_found)" in missing
            outside = await refused(session, "write_file", path="../etc/x", content="x")
            assert "(invalid_path)" in outside
            assert "Hint: use a path relative to the workspace" in outside


async def test_jobs_start_follow_and_cancel(server: Live) -> None:
    with add_user(server, "alice") as alice:
        async with mcp_session(server, key_of(alice)) as session:
            code = "echo one; sleep 1; echo two; exit 4"
            job = await call(session, "job_start", code=code, language="shell", name="two lines")
            assert (job["name"], job["kind"], job["language"]) == ("two lines", "exec", "shell")
            log, last = await follow(session, job["id"])
            assert log == "one\ntwo\n"
            assert (last["state"], last["exit_code"]) == ("failed", 4)
            status = await call(session, "job_status", job_id=job["id"])
            assert status["state"] == "failed"
            assert [e["state"] for e in status["events"]][-1] == "failed"
            assert alice.get(f"/v1/jobs/{job['id']}/logs").text == "one\ntwo\n"

            long = await call(session, "job_start", code="import time; time.sleep(300)")
            waited = await call(session, "job_follow", job_id=long["id"], wait_s=1)
            assert not waited["ended"]
            cancelled = await call(session, "job_cancel", job_id=long["id"])
            assert cancelled["state"] == "cancelled"
            again = await refused(session, "job_cancel", job_id=long["id"])
            assert "(conflict)" in again
            listed = await call(session, "job_list")
            assert [j["id"] for j in listed["jobs"]] == [long["id"], job["id"]]
            neither = await refused(session, "job_start", code="print(1)", file="a.py")
            assert "either code or a file" in neither
        audit = alice.get("/v1/audit", params={"kind": "job"}).json()["events"]
    actions = {(e["action"], e["target"]) for e in audit}
    assert {("job.create", job["id"]), ("job.cancel", long["id"])} <= actions


async def test_refused_without_a_users_key(server: Live) -> None:
    url = f"{server.url}/mcp"
    accept = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=60, headers=accept) as http:
        nobody = http.post(url, json=INITIALIZE)
        assert_error(nobody, 401, "unauthorized")
        assert nobody.headers["WWW-Authenticate"] == "Bearer"
        wrong = http.post(url, json=INITIALIZE, headers={"Authorization": "Bearer ac_nope"})
        assert_error(wrong, 401, "unauthorized")
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        error = assert_error(http.post(url, json=INITIALIZE, headers=admin), 403, "forbidden")
        assert error["message"] == "the admin token has no cell"
        with add_user(server, "alice") as alice:
            mine = {"Authorization": alice.headers["Authorization"]}
            ok = http.post(url, json=INITIALIZE, headers=mine)
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"]["serverInfo"]["name"] == "agentcell"


async def test_another_users_session_sees_only_their_own_cell(server: Live) -> None:
    with add_user(server, "alice") as alice, add_user(server, "bob") as bob:
        async with (
            mcp_session(server, key_of(alice)) as mine,
            mcp_session(server, key_of(bob)) as theirs,
        ):
            await call(mine, "write_file", path="secret.txt", content="alice only")
            await call(mine, "exec", code="secret = 'in alice cell'")
            job = await call(mine, "job_start", code="sleep 300", language="shell")

            assert (await call(theirs, "list_files"))["entries"] == []
            assert "(not_found)" in await refused(theirs, "read_file", path="secret.txt")
            assert "(not_found)" in await refused(theirs, "delete_file", path="secret.txt")
            peek = await call(theirs, "exec", code="cat /workspace/secret.txt", language="shell")
            assert peek["exit_code"] != 0
            assert "alice only" not in peek["stdout"]
            python = await call(theirs, "exec", code="print(globals().get('secret'))")
            assert python["stdout"] == "None\n"
            for tool in ("job_status", "job_follow", "job_cancel"):
                assert "(not_found)" in await refused(theirs, tool, job_id=job["id"])
            assert (await call(theirs, "job_list"))["jobs"] == []

            assert await call(mine, "read_file", path="secret.txt") == {"result": "alice only"}
            assert (await call(mine, "job_status", job_id=job["id"]))["state"] != "cancelled"
        assert bob.get("/v1/files", params={"path": "."}).json()["entries"] == []
        assert alice.get(f"/v1/jobs/{job['id']}").json()["state"] in {"queued", "running"}


async def test_the_sdks_default_client_negotiates_and_works(server: Live) -> None:
    with add_user(server, "alice") as alice:
        async with (
            _http(key_of(alice)) as http,
            Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client,
        ):
            assert client.protocol_version in MODERN_PROTOCOL_VERSIONS  # no handshake
            assert client.instructions is not None
            assert "/workspace" in client.instructions
            got = await call(client, "exec", code="print(6 * 7)")
            written = await call(client, "write_file", path="x.txt", content="x")
    assert got["stdout"] == "42\n"
    assert written == {"path": "x.txt", "size": 1}
