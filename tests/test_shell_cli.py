"""``agentcell shell`` in a real terminal (tmux): raw keys, Ctrl-C, the window's size followed,
the shell's exit code as the CLI's; ``agentcell terminals``; ``agentcell ports ls|url`` against
a server in the cell, and the URLs they print working (with the key, and in a browser's way)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.api.test_ports import SERVER
from tests.conftest import Live
from tests.test_client_cli import api_key, cli_env, run  # noqa: F401 - fixtures
from tests.waiting import wait_until

pytestmark = pytest.mark.docker
AGENTCELL = str(Path(sys.executable).with_name("agentcell"))


class Tmux:
    """A tmux server of the test's own, with one window running a command."""

    def __init__(self, command: str, env: dict[str, str], cols: int = 80, rows: int = 24) -> None:
        self.socket = f"agentcell-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.tmux(
            "new-session", "-d", "-x", str(cols), "-y", str(rows),
            f"env {exports} {command}; echo CLI-EXIT=$?; sleep 600",
        )  # fmt: skip

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "0", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "0", "-l", text)
        self.keys("Enter")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "0", "-S", "-200")

    def wait_for(self, text: str) -> str:
        wait_until(f"{text!r} on the screen", lambda: text in self.screen(), timeout_s=60)
        return self.screen()

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False)


@pytest.fixture
def tmux_env(cli_env: Live, api_key: str) -> dict[str, str]:  # noqa: F811
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: scripts/setup installs it")
    return {"AGENTCELL_URL": cli_env.url, "AGENTCELL_API_KEY": api_key, "TERM": "xterm-256color"}


def test_agentcell_shell_in_a_real_terminal(tmux_env: dict[str, str]) -> None:
    term = Tmux(f"{AGENTCELL} shell", tmux_env, cols=90, rows=25)
    try:
        term.wait_for("/workspace $")  # the cell's prompt
        term.type("tty; stty size; echo t-$((20+1))")
        screen = term.wait_for("t-21")
        assert "/dev/pts/" in screen
        assert "25 90" in screen
        term.tmux("resize-window", "-t", "0", "-x", "120", "-y", "40")  # SIGWINCH to the CLI
        wait_until("the new size", lambda: "40 120" in stty_size(term), timeout_s=60)
        term.type("sleep 60; echo not-interrupted-$((2+2))")
        time.sleep(0.5)
        term.keys("C-c")  # raw mode: Ctrl-C goes to the cell, not to the CLI
        term.type("echo alive-$((3+3))")
        screen = term.wait_for("alive-6")
        assert "not-interrupted-4" not in screen
        term.type("exit 3")
        term.wait_for("CLI-EXIT=3")
    finally:
        term.close()


def stty_size(term: Tmux) -> str:
    term.type("stty size")
    time.sleep(0.3)
    return term.screen()


def test_a_piped_shell_and_terminals_ls_rm(
    tmux_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, **tmux_env}
    piped = subprocess.run(
        [AGENTCELL, "shell"], input=b"echo piped-$((4+5))\nexit 7\n", env=env,
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert piped.returncode == 7
    assert b"piped-9" in piped.stdout
    term = Tmux(f"{AGENTCELL} shell", tmux_env)
    try:
        term.wait_for("/workspace $")
        code, out, _ = run(capsys, "terminals", "ls", "--json")
        assert code == 0
        (listed,) = json.loads(out)
        assert listed["attached"] is True
        code, out, _ = run(capsys, "terminals", "rm", listed["id"])
        assert code == 0
        term.wait_for("CLI-EXIT=")  # ended from elsewhere: the CLI returns
        code, _, err = run(capsys, "terminals", "rm", listed["id"])
        assert code == 1
        assert "agentcell terminals ls" in err
        code, _, err = run(capsys, "shell", "--session", "nope")
        assert code == 1
        assert "no terminal" in err
    finally:
        term.close()


def test_ports_ls_and_url(
    cli_env: Live,  # noqa: F811
    api_key: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ports", "ls")
    assert code == 0
    assert "nothing listens" in out
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=cli_env.url, headers=headers, timeout=60) as http:
        http.put("/v1/files/raw", params={"path": "cellserver.py"}, content=SERVER)
        code = "python3 cellserver.py 8080 > server.log 2>&1 &"
        http.post("/v1/cell/exec", json={"language": "shell", "code": code, "background": True})
        wait_until("it listens", lambda: http.get("/v1/cell/ports").json() != [])
    code, out, _ = run(capsys, "ports", "ls")
    assert code == 0
    assert "8080" in out
    assert "cellserver.py" in out
    code, out, _ = run(capsys, "ports", "url", "8080", "hello")
    url = out.strip()
    assert url == f"{cli_env.url}/v1/cell/ports/8080/hello"
    assert httpx.get(url, headers=headers).text == "hello"
    code, out, _ = run(capsys, "ports", "url", "8080", "hello", "--browser")
    with httpx.Client(timeout=60, follow_redirects=True) as browser:  # no key: the link's token
        assert browser.get(out.strip()).text == "hello"
    code, _, err = run(capsys, "ports", "url", "0")
    assert code == 1
    assert "error" in err


@pytest.mark.usefixtures("api_key")
def test_desktop_and_jupyter_say_they_need_the_full_image(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in ("desktop", "jupyter"):
        code, _, err = run(capsys, command)
        assert code == 1
        assert "full image" in err
        assert "agentcell image build --profile full" in err
