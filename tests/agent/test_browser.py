"""Headless Chromium inside the cell (the `full` image), driven by the browser agent's tools,
on a page served by the cell itself on its own loopback: no traffic leaves the cell."""

from __future__ import annotations

import pytest

from agentcell.agent.events import Done, ToolResult
from agentcell.config import CellLimits
from tests.agent.conftest import call, run_plan
from tests.conftest import ManagerFactory, SettingsFactory

# The first use of `full_image` builds it: minutes on a new machine (debootstrap of Chromium).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3600)]

PAGE = """<!doctype html>
<html><head><title>Cell page</title></head><body>
<p id="msg">Hello from the cell</p>
<button id="go" onclick="document.getElementById('msg').textContent = 'Clicked: ' +
  document.getElementById('name').value">Go</button>
<input id="name">
</body></html>"""

SERVE = (
    "cd site && (nohup python3 -m http.server 8124 --bind 127.0.0.1 >/dev/null 2>&1 &) && "
    "python3 -c 'import socket, time\n"
    "for _ in range(200):\n"
    '    try: socket.create_connection(("127.0.0.1", 8124)); break\n'
    "    except OSError: time.sleep(0.05)'"
)
URL = "http://127.0.0.1:8124/index.html"


async def test_the_browser_opens_reads_types_clicks_and_takes_a_screenshot(
    make_settings: SettingsFactory, make_manager: ManagerFactory, full_image: str
) -> None:
    settings = make_settings(image=full_image).model_copy(
        update={"limits": CellLimits(memory_mb=1024, pids=1024, shm_mb=64, workspace_mb=256)}
    )
    async with make_manager(settings) as manager:
        cell = await manager.ensure("alice")
        await cell.files.write("site/index.html", PAGE.encode())
        served = await cell.exec(SERVE, "shell", timeout_s=20, background=True)
        assert served.exit_code == 0, served
        turn, seen = await run_plan(
            manager,
            "browser",
            call("open", url=URL),
            call("read_text"),
            call("type", selector="#name", text="Ada"),
            call("click", selector="#go"),
            call("read_text"),
            call("screenshot", path="shots/page.png"),
            call("click", selector="#does-not-exist"),
        )
        shot = await cell.files.read_bytes("shots/page.png")
    assert isinstance(turn.events[-1], Done), turn.events
    oks = [(e.tool, e.ok) for e in turn.events if isinstance(e, ToolResult)]
    assert oks == [
        ("open", True),
        ("read_text", True),
        ("type", True),
        ("click", True),
        ("read_text", True),
        ("screenshot", True),
        ("click", False),
    ], [str(p.content) for p in seen]
    content = [str(p.content) for p in seen]
    opened = f'opened, HTTP 200; page: {URL}\n<untrusted-web-content boundary="'
    assert content[0].startswith(opened)
    assert "\ntitle: Cell page\n</untrusted-web-content" in content[0]
    assert "Hello from the cell" in content[1]
    assert "Clicked: Ada" in content[4]
    assert "shots/page.png" in content[5]
    assert shot.startswith(b"\x89PNG")
    assert "#does-not-exist" in content[6]
