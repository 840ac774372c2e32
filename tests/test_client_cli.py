"""The Python clients and the CLI against a live server: uvicorn on a free port, in a thread,
serving ``create_app(settings)`` on a fresh data dir, with real cells."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import docker
import httpx
import pytest

import agentcell
from agentcell.cli import main
from agentcell.cli._hints import cli_hint
from agentcell.client import (
    AsyncClient,
    Client,
    ExitEvent,
    ServerSentEvent,
    ServerUnreachable,
    SSEParser,
    StderrEvent,
    StdoutEvent,
    error_from,
)
from agentcell.config import Settings
from agentcell.errors import (
    AgentcellError,
    CellOutOfMemory,
    Conflict,
    ExecTimeout,
    NotFound,
    PathNotFound,
    Unauthorized,
)
from agentcell.progress import ProgressEvent
from agentcell.sandbox.docker.images import REPOSITORY, _stock_base_available
from agentcell.sandbox.docker.prune import prune_images
from agentcell.schemas import AuditEventPublic
from tests.conftest import RUN_ID, TEST_LABEL, Live, SettingsFactory, sweep_server

pytestmark = pytest.mark.docker

START_TIMEOUT_S = 60.0
CLIENT_ENV = ("AGENTCELL_URL", "AGENTCELL_API_KEY", "AGENTCELL_ADMIN_TOKEN", "AGENTCELL_TIMEOUT_S")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, server: Live) -> Live:
    """The CLI's environment points at the live server, with the admin token."""
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENTCELL_URL", server.url)
    monkeypatch.setenv("AGENTCELL_ADMIN_TOKEN", server.admin_token)
    return server


@pytest.fixture
def api_key(cli_env: Live, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh user; its key is in AGENTCELL_API_KEY."""
    with cli_env.admin() as admin:
        key = admin.users_add("tester").api_key
    monkeypatch.setenv("AGENTCELL_API_KEY", key)
    return key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(err: str) -> None:
    """An error of ours: one message, maybe a hint, never a traceback."""
    assert err.startswith("error: ")
    assert "Traceback" not in err


# --- CLI ---------------------------------------------------------------------------------------


def test_users_add_list_rm(
    cli_env: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "users", "add", "alice")
    assert code == 0
    key = re.search(r"^\s*export AGENTCELL_API_KEY=(\S+)$", out, re.M)
    user_id = re.search(r"created, id (\S+)", out)
    assert key, out
    assert user_id, out
    user_id_ = user_id[1]
    with Client(cli_env.url, key[1]) as alice:
        assert alice.me().name == "alice"

    # without AGENTCELL_ADMIN_TOKEN, the data dir's admin_token file is used
    monkeypatch.delenv("AGENTCELL_ADMIN_TOKEN")
    monkeypatch.setenv("AGENTCELL_DATA_DIR", str(cli_env.settings.data_dir))
    code, out, _ = run(capsys, "users", "list")
    assert code == 0
    assert "alice" in out
    assert user_id_ in out

    code, out, _ = run(capsys, "users", "rm", user_id_, "--delete-workspace")
    assert code == 0
    assert user_id_ in out
    code, out, _ = run(capsys, "users", "list")
    assert "alice" not in out

    code, _, err = run(capsys, "users", "rm", user_id_)
    assert code == 1
    assert_clean_error(err)


def test_exec_prints_output_and_returns_exit_code(
    api_key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api_key
    # stderr is compared loosely: the server runs in this process and may log there
    assert run(capsys, "exec", "print(6*7)")[:2] == (0, "42\n")

    code, out, err = run(capsys, "exec", "import sys; print('out'); sys.exit('bye') ")
    assert (code, out) == (1, "out\n")
    assert "bye" in err
    code, out, err = run(capsys, "exec", "--shell", "echo hi; echo oops >&2; exit 7")
    assert (code, out) == (7, "hi\n")
    assert "oops\n" in err

    # contexts keep their variables; CODE "-" reads stdin
    assert run(capsys, "exec", "--context", "c1", "x = 41")[0] == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("print(x + 1)\n"))
    assert run(capsys, "exec", "--context", "c1", "-")[:2] == (0, "42\n")
    code, _, err = run(capsys, "exec", "print(x)")  # another context
    assert code == 1
    assert "NameError" in err

    code, _, err = run(capsys, "exec", "--timeout", "0.5", "import time; time.sleep(30)")
    assert code != 0
    assert "timed out" in err


def test_files_round_trip(api_key: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert api_key
    payload = os.urandom(300_000)
    src = tmp_path / "data.bin"
    src.write_bytes(payload)

    code, out, _ = run(capsys, "files", "put", str(src), "dir/")
    assert code == 0
    assert "dir/data.bin (300,000 bytes)" in out
    code, out, _ = run(capsys, "files", "ls", "dir")
    assert code == 0
    assert "data.bin" in out
    assert "300,000" in out

    back = tmp_path / "back"
    back.mkdir()
    assert run(capsys, "files", "get", "dir/data.bin", str(back))[0] == 0
    assert (back / "data.bin").read_bytes() == payload

    zipped = tmp_path / "dir.zip"
    assert run(capsys, "files", "zip", "dir", str(zipped))[0] == 0
    with zipfile.ZipFile(zipped) as z:
        [name] = [n for n in z.namelist() if not n.endswith("/")]
        assert name.endswith("data.bin")
        assert z.read(name) == payload

    code, _, err = run(capsys, "files", "rm", "dir")
    assert code == 1  # a folder needs -r
    assert "error:" in err
    assert run(capsys, "files", "rm", "-r", "dir")[0] == 0
    code, _, err = run(capsys, "files", "get", "dir/data.bin", str(tmp_path / "gone"))
    assert code == 1
    assert_clean_error(err)
    assert not (tmp_path / "gone").exists()
    assert not list(tmp_path.glob(".gone*"))  # no partial file left behind


def test_cell_and_audit(api_key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert api_key
    assert run(capsys, "exec", "print(1)")[0] == 0
    code, out, _ = run(capsys, "cell", "status")
    assert code == 0
    assert "running" in out
    code, out, _ = run(capsys, "cell", "restart")
    assert code == 0
    assert "state" in out
    code, out, _ = run(capsys, "audit", "--limit", "50")
    assert code == 0
    assert "exec" in out


def test_wrong_key_prints_the_servers_hint(
    cli_env: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCELL_API_KEY", "wrong")
    answer = httpx.get(f"{cli_env.url}/v1/cell", headers={"Authorization": "Bearer wrong"})
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["hint"]

    code, out, err = run(capsys, "exec", "print(1)")
    assert (code, out) == (1, "")
    assert_clean_error(err)
    assert f"error: {error['message']}" in err
    assert f"hint: {cli_hint(AgentcellError('', hint=error['hint']))}" in err  # in CLI words


def test_server_down(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    monkeypatch.setenv("AGENTCELL_URL", url)
    monkeypatch.setenv("AGENTCELL_API_KEY", "any")
    code, out, err = run(capsys, "exec", "print(1)")
    assert (code, out) == (1, "")
    assert_clean_error(err)
    assert f"not reachable at {url}" in err
    assert "scripts/serve" in err
    with pytest.raises(ServerUnreachable), Client(url, "any") as client:
        client.healthz()


# --- Python clients ----------------------------------------------------------------------------

STREAMED = "import sys, time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.1)\n"


def test_sync_client(server: Live, tmp_path: Path) -> None:
    with server.admin() as admin:
        user = admin.users_add("sync")
        with pytest.raises(Conflict) as conflict:
            admin.users_add("sync")
        assert conflict.value.status_code == 409
        assert [u.name for u in admin.users_list()] == ["sync"]
        assert admin.me().admin
        assert admin.healthz().status == "ok"
    with Client(server.url, user.api_key) as client:
        events = list(client.exec_stream(STREAMED + "print('e', file=sys.stderr)"))
        *output, last = events
        stdout = [e for e in output if isinstance(e, StdoutEvent)]
        assert len(stdout) >= 2  # streamed as it came, not in one piece
        assert "".join(e.data for e in stdout) == "0\n1\n2\n3\n"
        assert [e.data for e in output if isinstance(e, StderrEvent)] == ["e\n"]
        assert isinstance(last, ExitEvent)
        assert last.exit_code == 0

        result = client.exec("echo $((6*7))", language="shell")
        assert (result.stdout, result.exit_code, result.timed_out) == ("42\n", 0, False)

        assert client.files_put("a/b.txt", b"hello").size == 5
        assert client.files_put("a/c.txt", io.BytesIO(b"from a file object")).size == 18
        big = tmp_path / "big"
        big.write_bytes(b"x" * 1_000_000)
        assert client.files_put("a/big", big).size == 1_000_000
        assert client.files_get("a/b.txt") == b"hello"
        assert client.files_download("a/big", tmp_path / "big2") == 1_000_000
        assert sorted(e.name for e in client.files_list("a").entries) == ["b.txt", "big", "c.txt"]
        with pytest.raises(PathNotFound) as missing:
            client.files_get("a/nope")
        assert missing.value.status_code == 404
        assert isinstance(missing.value, FileNotFoundError)
        client.files_rm("a", recursive=True)
        assert client.cell().state == "running"
        assert any(e.action == "exec" for e in client.audit(limit=10).events)
    with Client(server.url, "wrong") as stranger, pytest.raises(Unauthorized) as denied:
        stranger.cell()
    assert denied.value.status_code == 401


async def test_async_client(server: Live, tmp_path: Path) -> None:
    async with AsyncClient(server.url, api_key="", admin_token=server.admin_token) as admin:
        user = await admin.users_add("async")
        with pytest.raises(NotFound):
            await admin.users_rm("no-such-user")
    async with AsyncClient(server.url, user.api_key) as client:
        assert (await client.me()).name == "async"
        events = [e async for e in client.exec_stream(STREAMED)]
        stdout = [e for e in events if isinstance(e, StdoutEvent)]
        assert len(stdout) >= 2
        assert "".join(e.data for e in stdout) == "0\n1\n2\n3\n"
        assert isinstance(events[-1], ExitEvent)
        assert events[-1].exit_code == 0

        failed = await client.exec("raise SystemExit(3)")
        assert failed.exit_code == 3

        src = tmp_path / "up.bin"
        src.write_bytes(os.urandom(200_000))
        assert (await client.files_put("up.bin", src)).size == 200_000
        assert await client.files_get("up.bin") == src.read_bytes()
        assert await client.files_zip(".", tmp_path / "ws.zip") > 0
        with zipfile.ZipFile(tmp_path / "ws.zip") as z:
            assert any(n.endswith("up.bin") for n in z.namelist())
        await client.files_rm("up.bin")
        with pytest.raises(PathNotFound):
            await client.files_get("up.bin")


# --- agentcell serve: the README's quickstart ---------------------------------------------------


def test_serve_quickstart(
    make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    """``agentcell serve`` prints the first screen; its steps, followed, print 42."""
    settings = make_settings()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCELL_")}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "AGENTCELL_IMAGE": settings.image,
        "AGENTCELL_INSTANCE_ID": settings.instance_id,
        "AGENTCELL_LABELS": json.dumps({TEST_LABEL: RUN_ID}),
        "AGENTCELL_POOL_SIZE": "0",
        "AGENTCELL_LIMITS__WORKSPACE_MB": str(settings.limits.workspace_mb),
    }
    agentcell = str(Path(sys.executable).with_name("agentcell"))
    serve = [agentcell, "serve", "--port", str(port), "--data-dir", str(settings.data_dir)]
    # the server's log goes to this process's stderr: pytest shows it when the test fails
    with subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            url = f"http://127.0.0.1:{port}"
            screen = _read_until(proc, "agentcell exec")
            assert url in screen
            token_line = re.search(r"^\s*export AGENTCELL_ADMIN_TOKEN=(\S+)$", screen, re.M)
            assert token_line, screen
            token = token_line[1]
            assert token in screen.split("next")[0]  # just created: shown once
            assert (settings.data_dir / "admin_token").stat().st_mode & 0o777 == 0o600
            _wait_ready(url, proc)

            env |= {"AGENTCELL_URL": url, "AGENTCELL_ADMIN_TOKEN": token}
            added = _cli(env, "users", "add", "alice")
            key = re.search(r"^\s*export AGENTCELL_API_KEY=(\S+)$", added, re.M)
            assert key, added
            env["AGENTCELL_API_KEY"] = key[1]
            assert _cli(env, "exec", "print(6*7)") == "42\n"
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                assert proc.wait(timeout=30) == 0
            finally:
                proc.kill()
                sweep_server(docker_client, settings)


def serve_env(settings: Settings) -> dict[str, str]:
    """The environment of an ``agentcell serve`` subprocess on these test settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCELL_")}
    return env | {
        "PYTHONUNBUFFERED": "1",
        "AGENTCELL_IMAGE": settings.image,
        "AGENTCELL_INSTANCE_ID": settings.instance_id,
        "AGENTCELL_LABELS": json.dumps({TEST_LABEL: RUN_ID}),
        "AGENTCELL_POOL_SIZE": "0",
        "AGENTCELL_LIMITS__WORKSPACE_MB": str(settings.limits.workspace_mb),
    }


def _serve(settings: Settings, port: int) -> subprocess.Popen[str]:
    agentcell = str(Path(sys.executable).with_name("agentcell"))
    serve = [agentcell, "serve", "--port", str(port), "--data-dir", str(settings.data_dir)]
    env = serve_env(settings)
    return subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, text=True)


def _exec_quietly(client: Client, command: str) -> None:
    with contextlib.suppress(AgentcellError):  # the server dies under it
        client.exec(command, "shell")


def _audit_of(client: Client, ref_code: str) -> AuditEventPublic | None:
    found = [
        e for e in client.audit(100).events if e.action == "exec" and e.detail.endswith(ref_code)
    ]
    return found[0] if found else None


def test_an_exec_cut_short_by_a_killed_server_is_audited_as_unfinished(
    make_settings: SettingsFactory,
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(settings, port)
    try:
        _wait_ready(url, proc)
        token = (settings.data_dir / "admin_token").read_text().strip()
        with Client(url, api_key="", admin_token=token) as admin:
            key = admin.users_add("victim").api_key
        with Client(url, api_key=key) as client:
            runner = threading.Thread(target=_exec_quietly, args=(client, "sleep 30"), daemon=True)
            runner.start()
            deadline = time.monotonic() + START_TIMEOUT_S
            while (event := _audit_of(client, "sleep 30")) is None:
                assert time.monotonic() < deadline, "the exec's start was never audited"
                time.sleep(0.05)
            assert (event.status, event.started_by) == ("running", "api")
            proc.kill()  # SIGKILL: no clean-up of any kind
            proc.wait(timeout=30)
            runner.join(timeout=60)

        proc = _serve(settings, port)
        _wait_ready(url, proc)
        with Client(url, api_key=key) as client:
            event = _audit_of(client, "sleep 30")
        assert event is not None
        assert (event.status, event.ok, event.exit_code) == ("unfinished", False, None)
        assert event.detail.startswith("unfinished: the server stopped before this exec ended")

        for name in CLIENT_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AGENTCELL_URL", url)
        monkeypatch.setenv("AGENTCELL_API_KEY", key)
        code, out, _ = run(capsys, "audit")
        assert code == 0
        assert "✗ unfinished" in out
    finally:
        proc.kill()
        proc.wait(timeout=30)
        sweep_server(docker_client, settings)


def _read_until(proc: subprocess.Popen[str], marker: str) -> str:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    pytest.fail(f"agentcell serve exited with {proc.wait()}: {''.join(lines)}")


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with Client(url) as client:
        while True:
            try:
                client.healthz()
                return
            except ServerUnreachable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("agentcell serve did not come up")
                time.sleep(0.05)


def _cli(env: dict[str, str], *argv: str) -> str:
    agentcell = str(Path(sys.executable).with_name("agentcell"))
    done = subprocess.run([agentcell, *argv], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- pieces ------------------------------------------------------------------------------------


def test_sse_parser() -> None:
    parser = SSEParser()
    lines = [
        ": comment",
        "event: stdout",
        'data: {"data":',
        "data: 1}",
        "id: 7",
        "",
        "",
        "data:x",
        "",
    ]
    events = [e for line in lines if (e := parser.feed(line))]
    assert events == [
        ServerSentEvent("stdout", '{"data":\n1}', "7"),
        ServerSentEvent("message", "x", "7"),
    ]


def test_errors_by_code() -> None:
    timeout = error_from({"code": "exec_timeout", "message": "m", "hint": "h"}, 408)
    assert isinstance(timeout, ExecTimeout)
    assert isinstance(timeout, TimeoutError)
    assert (timeout.status_code, timeout.message, timeout.hint) == (408, "m", "h")
    assert isinstance(error_from({"code": "out_of_memory", "message": "m"}), CellOutOfMemory)
    assert type(error_from({"code": "not_found", "message": "m"}, 404)) is NotFound
    assert type(error_from({"code": "not_found", "message": "m"}, 404, files=True)) is PathNotFound
    unknown = error_from({"code": "brand_new", "message": "m"}, 418)
    assert type(unknown) is AgentcellError
    assert (unknown.code, unknown.status_code) == ("brand_new", 418)


# --- terminal injection: what the cell prints is shown, not obeyed, on a terminal ---------------

HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b[2J"  # OSC 52 writes the clipboard; CSI 2J clears the screen


def on_a_terminal(*argv: str) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; what the terminal received."""
    agentcell = str(Path(sys.executable).with_name("agentcell"))
    leader, follower = pty.openpty()
    with subprocess.Popen([agentcell, *argv], stdout=follower, stderr=follower) as proc:
        os.close(follower)
        received = bytearray()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            received += chunk
        os.close(leader)
        return proc.wait(timeout=60), received.decode(errors="replace").replace("\r\n", "\n")


def test_exec_output_on_a_terminal_is_made_visible(api_key: str) -> None:
    assert api_key
    code = f"import sys; print({HOSTILE!r} + 'out'); print({HOSTILE!r} + 'err', file=sys.stderr)"
    status, shown = on_a_terminal("exec", code)
    assert status == 0, shown
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert "^[]52;c;cHduZWQ=^G^[[2Jout\n" in shown
    assert "^[]52;c;cHduZWQ=^G^[[2Jerr\n" in shown

    status, shown = on_a_terminal("exec", "--raw", code)  # asked for: the bytes pass
    assert status == 0, shown
    assert HOSTILE + "out" in shown

    agentcell = str(Path(sys.executable).with_name("agentcell"))  # a pipe gets the bytes
    piped = subprocess.run([agentcell, "exec", code], capture_output=True, text=True, check=True)
    assert piped.stdout == HOSTILE + "out\n"


def test_file_names_on_a_terminal_are_made_visible(api_key: str) -> None:
    with Client(api_key=api_key) as client:
        client.exec(f"open({(HOSTILE + 'name.txt')!r}, 'w').close()")
    status, shown = on_a_terminal("files", "ls")
    assert status == 0, shown
    assert "\x1b]52" not in shown  # (the table's own bold is the CLI's)
    assert "\x1b[2J" not in shown
    assert "^[]52;c;cHduZWQ=^G^[[2Jname.txt" in shown


# --- the CLI a new user meets ------------------------------------------------------------------


def test_version_and_whoami(api_key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert api_key
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"agentcell {agentcell.__version__}\n"
    code, out, err = run(capsys, "whoami")
    assert code == 0, err
    assert out.startswith("tester, id u_")


def test_url_after_the_command(
    api_key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = os.environ["AGENTCELL_URL"]
    monkeypatch.setenv("AGENTCELL_URL", "http://127.0.0.1:9")  # nothing there
    assert api_key
    code, out, err = run(capsys, "exec", "--url", url, "print(6*7)")
    assert (code, out) == (0, "42\n"), err
    code, out, err = run(capsys, "files", "ls", "--url", url)
    assert code == 0, err
    code, out, err = run(capsys, "--url", url, "whoami")  # before it, as ever
    assert code == 0, err
    code, _, err = run(capsys, "whoami")
    assert code == 1
    assert "agentcell serve" in err


def test_exec_runs_a_file_by_its_extension(
    api_key: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert api_key
    monkeypatch.chdir(tmp_path)
    Path("s.py").write_text("import sys\nprint(sys.version_info[0] * 14)\n")
    Path("s.sh").write_text("echo $((6 * 7)) from $BASH_VERSINFO\n")
    assert run(capsys, "exec", "s.py")[:2] == (0, "42\n")
    assert run(capsys, "exec", "s.sh")[:2] == (0, "42 from 5\n")
    code, _, err = run(capsys, "exec", "-c", "s.py")  # the literal string: a NameError
    assert code == 1
    assert "NameError: name 's' is not defined" in err


def test_users_rm_by_name(cli_env: Live, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_env
    assert run(capsys, "users", "add", "bob")[0] == 0
    code, out, err = run(capsys, "users", "rm", "bob")
    assert code == 0, err
    assert "user bob (u_" in out
    code, _, err = run(capsys, "users", "rm", "bob")
    assert code == 1
    assert "no user 'bob'" in err
    assert "agentcell users ls" in err


def test_cells_ls_and_reap(api_key: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(api_key=api_key) as client:
        client.exec("print(1)")
        me = client.me()
    code, out, err = run(capsys, "cells", "ls")
    assert code == 0, err
    assert me.id in out
    assert "running" in out
    code, out, err = run(capsys, "cells", "reap")
    assert code == 0, err
    assert re.fullmatch(r"paused \d+, stopped \d+, removed \d+, died \d+\n", out)


def test_the_admin_puts_one_cell_down_and_rotates_a_key(
    api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(api_key=api_key) as client:
        client.exec("x = 41")
    for command, state in (("pause", "paused"), ("stop", "stopped"), ("rm", "removed")):
        code, out, err = run(capsys, "cells", command, "tester")
        assert code == 0, err
        assert out == f"the cell of tester is {state}\n"
        with Client(api_key=api_key) as client:  # the next call wakes or recreates it
            assert client.exec("print(1)").stdout == "1\n"
    code, _, err = run(capsys, "cells", "pause", "nobody")
    assert code == 1
    assert "agentcell users ls" in err
    code, out, err = run(capsys, "users", "key", "tester")
    assert code == 0, err
    new_key = re.search(r"shown only now\): (\S+)", out)
    assert new_key, out
    with Client(api_key=new_key[1]) as client:
        assert client.me().name == "tester"
    with Client(api_key=api_key) as old, pytest.raises(AgentcellError) as refused:
        old.me()
    assert refused.value.status_code == 401
    with Client(api_key=new_key[1]) as client:
        newest = client.rotate_key()  # a user rotates their own
    with Client(api_key=newest) as client:
        assert client.me().name == "tester"


def test_serve_prints_a_command_that_works() -> None:
    """Not on PATH: the first screen names the full path of the running agentcell."""
    agentcell = Path(sys.executable).with_name("agentcell")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCELL_")}
    env["PATH"] = "/usr/bin:/bin"
    script = "from agentcell.cli.serve import command_name; print(command_name())"
    shown = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.argv = [{str(agentcell)!r}]; {script}"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert shown == str(agentcell.resolve())
    assert subprocess.run([shown, "--version"], capture_output=True, check=False).returncode == 0


# --- hints name CLI commands, not HTTP routes ---------------------------------------------------

HTTP_WORDS = re.compile(r"\b(GET|POST|PUT|DELETE) /|/docs\b|/v1/|Authorization|\bheader\b")


def test_every_http_hint_of_the_server_has_cli_words() -> None:
    src = Path(agentcell.__file__).parent
    hints = []
    for path in src.rglob("*.py"):
        if "cli" in path.parts or "client" in path.parts:
            continue
        text = path.read_text()
        hints += re.findall(r'hint\s*=\s*"([^"]*)"', text)
        hints += re.findall(r'hint\s*=\s*\(?\s*"([^"]*)"', text)
        hints += re.findall(r'"[^"]*", "[^"]*", [^,]*, "([^"]*)"', text)  # error_response(...)
    http = {h for h in hints if HTTP_WORDS.search(h)}
    assert "list your sessions: GET /v1/sessions" in http  # the scan finds them
    for hint in http:
        shown = cli_hint(AgentcellError("x", hint=hint))
        assert not HTTP_WORDS.search(shown), f"translate for the CLI: {hint!r}"


def test_the_cli_shows_cli_hints(
    api_key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api_key
    code, _, err = run(capsys, "sessions", "rm", "s_0000")
    assert code == 1
    assert "hint: list your sessions: agentcell sessions ls" in err
    monkeypatch.setenv("AGENTCELL_API_KEY", "wrong")
    code, _, err = run(capsys, "whoami")
    assert code == 1
    assert "/v1" not in err
    assert "Authorization" not in err


# --- images: prune, and a progress that says what happened -------------------------------------


def test_image_prune_removes_old_images_no_container_uses(
    docker_client: docker.DockerClient, minimal_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    label = f"agentcell.test.prune={RUN_ID}"  # only this test's images: others' stay
    made: dict[str, str] = {}
    for name in ("old", "used"):
        dockerfile = f"FROM {minimal_image}\nLABEL agentcell.test.prune={RUN_ID} which={name}\n"
        image, _ = docker_client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()),
            tag=f"{REPOSITORY}:prune-{RUN_ID}-{name}",
            rm=True,  # no intermediate containers left behind
        )
        made[name] = image.id
    container = docker_client.containers.create(made["used"], labels={TEST_LABEL: RUN_ID})
    try:
        planned = prune_images(docker_client, dry_run=True, label=label)
        assert [p.image_id for p in planned] == [made["old"]]
        assert docker_client.images.get(made["old"])  # a dry run removes nothing
        pruned = prune_images(docker_client, label=label)
        assert [p.image_id for p in pruned] == [made["old"]]
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(made["old"])
        assert docker_client.images.get(made["used"])  # a container uses it
        assert docker_client.images.get(minimal_image)  # current
        code, out, err = run(capsys, "image", "prune", "--dry-run")
        assert code == 0, err
        assert re.search(r"^would remove \d+ images, [\d,]+ MB$", out, re.M), out
    finally:
        container.remove(force=True)
        docker_client.images.remove(made["used"], force=True)


def test_a_pull_that_did_not_pull_is_not_shown_as_a_pull_step(
    docker_client: docker.DockerClient,
) -> None:
    events: list[ProgressEvent] = []
    nowhere = f"127.0.0.1:{free_port()}/agentcell-none:latest"  # loopback: nothing listens
    assert not _stock_base_available(docker_client, events.append, nowhere)
    assert events, "the attempt is shown"
    assert {e.step for e in events} == {"base"}
    assert "using debootstrap" in events[-1].message
