"""The model key stays in the host process: nothing the agent runs in the cell can find it, and
no event or error shows it."""

from __future__ import annotations

import docker
import pytest

from agentcell.agent.events import Done, ToolResult
from agentcell.agent.failures import failed
from agentcell.errors import ModelUnreachable
from tests.agent.conftest import call, run_plan
from tests.conftest import ManagerFactory, SettingsFactory

pytestmark = pytest.mark.docker

KEY = "sk-test-SECRET123"
# The searches spell the key in two halves, so that the command itself does not contain it.
HUNT = (
    'env; echo; cat /proc/1/environ | tr "\\0" "\\n"; echo; '
    'for f in /proc/[0-9]*/environ; do tr "\\0" "\\n" < "$f"; done 2>/dev/null; '
    'grep -rl "SECRET""123" /workspace /tmp /run/agentcell 2>/dev/null; '
    'echo "searched: $(ls /proc | wc -l) proc entries"'
)
HUNT_PY = (
    "import os, pathlib\nprint(dict(os.environ))\n"
    "hits = [str(p) for root in ('/workspace', '/tmp') for p in pathlib.Path(root).rglob('*')\n"
    "        if p.is_file() and ('SECRET' + '123').encode() in p.read_bytes()]\n"
    "print('hits', hits)"
)


async def test_the_model_key_never_reaches_the_cell(
    make_manager: ManagerFactory, docker_client: docker.DockerClient
) -> None:
    async with make_manager(model_api_key=KEY) as manager:
        assert manager.settings.model_api_key.get_secret_value() == KEY
        turn, seen = await run_plan(
            manager,
            "coder",
            call("run_shell", command=HUNT),
            call("run_python", code=HUNT_PY),
            call("write_file", path="k.txt", content="x"),
        )
        assert isinstance(turn.events[-1], Done), turn.events
        shell, python = (str(p.content) for p in seen[:2])
        assert "HOME=/tmp" in shell  # the hunt did run
        assert "searched:" in shell
        assert "hits []" in python
        for event in turn.events:
            assert "SECRET123" not in repr(event.payload())
        done = turn.events[-1]
        assert isinstance(done, Done)
        assert b"SECRET123" not in done.messages_json
        cell = manager.get("alice")
        assert cell is not None
        env = docker_client.containers.get(cell.container_id).attrs["Config"]["Env"]
        assert not any("SECRET123" in item for item in env or [])
        assert all(isinstance(r, ToolResult) for r in turn.events if r.event == "tool_result")


def test_errors_never_show_the_key(make_settings: SettingsFactory) -> None:
    settings = make_settings(model_api_key=KEY)
    error = ModelUnreachable(f"bad request with Authorization: Bearer {KEY}", hint=f"key {KEY}")
    event = failed(error, settings, None)
    assert KEY not in event.message
    assert KEY not in event.hint
    assert "[key]" in event.message
    event = failed(RuntimeError(f"boom {KEY}"), settings, None)
    assert KEY not in event.message
