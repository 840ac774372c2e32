"""What an exec's answer says through the HTTP API, the client and the CLI: a python context that
was reset, a timeout, a missing network, and the processes a background exec kept."""

from __future__ import annotations

import json

import httpx
import pytest

from agentcell.client import Client, ExitEvent, StderrEvent
from agentcell.errors import NotFound
from agentcell.executor.contexts import MAX_CONTEXTS
from tests.conftest import Live
from tests.test_client_cli import api_key, cli_env, run

pytestmark = pytest.mark.docker
__all__ = ["api_key", "cli_env"]  # fixtures


def user(server: Live, name: str) -> Client:
    with server.admin() as admin:
        key = admin.users_add(name).api_key
    return Client(server.url, api_key=key)


def test_a_context_that_dies_says_it_was_reset(server: Live) -> None:
    with user(server, "dies") as c:
        c.exec("x = 1", context="c")
        died = c.exec("import os\nos._exit(1)", context="c")
        assert (died.exit_code, died.context_reset) == (1, True)
        after = c.exec("print('x' in globals())", context="c")
        assert (after.stdout, after.context_reset) == ("False\n", False)
        events = list(c.exec_stream("import os\nos._exit(3)", context="c"))
        assert isinstance(events[-1], ExitEvent)
        assert events[-1].context_reset


def test_an_evicted_context_says_it_was_reset(server: Live) -> None:
    with user(server, "evicts") as c:
        names = [f"c{i}" for i in range(MAX_CONTEXTS + 1)]  # the last one evicts the first
        for name in names:
            assert not c.exec("kept = 1", context=name).context_reset
        first = c.exec("print('kept' in globals())", context=names[0])
        assert (first.stdout, first.context_reset) == ("False\n", True)


@pytest.mark.parametrize("language", ["python", "shell"])
def test_a_timeout_is_one_story_in_both_languages(server: Live, language: str) -> None:
    code = "import time\ntime.sleep(60)" if language == "python" else "sleep 60"
    with user(server, f"slow-{language}") as c:
        result = c.exec(code, language, timeout_s=0.5)
    assert (result.exit_code, result.timed_out, result.context_reset) == (124, True, False)
    assert result.stderr == "agentcell: timed out after 0.5 s\n"


def test_no_network_is_said_in_words(server: Live) -> None:
    """A program that ignores the proxy finds no network at all, and is told where it is."""
    code = "import socket\nsocket.create_connection(('example.invalid', 80), timeout=5)"
    with user(server, "offline") as c:
        result = c.exec(code)
        assert result.exit_code == 1
        assert "Temporary failure in name resolution" in result.stderr
        assert result.stderr.endswith(
            "only those the network policy allows (agentcell network show; GET /v1/cell/network)\n"
        )
        stderr = "".join(e.data for e in c.exec_stream(code) if isinstance(e, StderrEvent))
        assert stderr.endswith("(agentcell network show; GET /v1/cell/network)\n")
        assert "no network" not in c.exec("import sys\nprint('fine', file=sys.stderr)").stderr


def test_background_processes_over_http(server: Live) -> None:
    with user(server, "bg") as c:
        assert c.exec("sleep 300 & echo $!", "shell").exit_code == 0
        assert c.processes() == []  # not kept: killed at the end of its exec
        started = "sleep 300 & echo $!; until grep -q sleep /proc/$!/comm; do sleep 0.01; done"
        pid = int(c.exec(started, "shell", background=True).stdout)
        (proc,) = c.processes()
        assert (proc.pid, proc.command, proc.origin) == (pid, "sleep 300", "shell")
        c.process_kill(pid)
        assert c.processes() == []
        with pytest.raises(NotFound, match="no process"):
            c.process_kill(pid)


def test_cli_background_ps_kill_and_reset(api_key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert api_key
    code, out, _ = run(capsys, "exec", "--shell", "--background", "sleep 300 & echo $!")
    assert code == 0
    pid = out.strip()
    code, out, _ = run(capsys, "ps")
    assert code == 0
    assert pid in out
    assert "sleep 300" in out
    assert run(capsys, "kill", pid)[0] == 0
    assert "no background processes" in run(capsys, "ps")[1]
    code, _, err = run(capsys, "exec", "import os; os._exit(1)")
    assert code == 1
    assert "python context 'default' was reset: its variables are gone" in err


def test_sse_exit_event_carries_context_reset(server: Live) -> None:
    with server.admin() as admin:
        key = admin.users_add("sse").api_key
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        body = {"code": "import os\nos._exit(1)"}
        with http.stream("POST", "/v1/cell/exec", json=body, headers=headers) as r:
            blocks = [b for b in r.read().decode().split("\n\n") if b]
    last = blocks[-1].split("\n")
    assert last[0] == "event: exit"
    assert json.loads(last[1].removeprefix("data: "))["context_reset"] is True
