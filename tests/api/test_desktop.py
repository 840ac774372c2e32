"""The live desktop (DESIGN §11) on a live server with real cells. In the full image: the VNC
server's RFB handshake through the WebSocket bridge while the cell has only ``lo``, and the
viewer page in real Chromium (Debian's, driven by Playwright) showing the browser agent's
Chromium at work, view only until the user takes control. In the minimal image: a clear 400,
and the bridge's refusals."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from agentcell.config import CellLimits
from tests.agent.conftest import full_image  # noqa: F401 - a fixture
from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.scripted import Scripted, call, returned, role, text

pytestmark = pytest.mark.docker
ARTIFACTS = Path(os.environ.get("AGENTCELL_TEST_ARTIFACTS", "/tmp/agentcell-test-artifacts"))
PAGE = (
    "<!doctype html><title>Red</title>"
    "<body style='margin:0;background:#d01010;height:100vh'><h1>agentcell</h1></body>"
)


def ws_url(live: Live, path: str) -> str:
    return live.url.replace("http://", "ws://") + path


def test_the_minimal_image_has_no_desktop(server: Live) -> None:
    with add_user(server, "alice") as http:
        refused = assert_error(http.get("/v1/cell/desktop"), 400, "invalid_request")
        assert "full image" in refused["message"]
        assert "AGENTCELL_IMAGE_PROFILE=full" in refused["hint"]
        viewer = http.get("/v1/cell/desktop/")
        assert viewer.status_code == 200
        assert '<script type="module" src="desktop.js">' in viewer.text
        assert "import RFB from" in http.get("/v1/cell/desktop/desktop.js").text
        rfb = http.get("/v1/cell/desktop/novnc/core/rfb.js")  # the npm package, served here
        assert rfb.status_code == 200, "scripts/setup installs web/node_modules"
        assert "export default class RFB" in rfb.text
        assert_error(http.get("/v1/cell/desktop/secrets.txt"), 404, "not_found")
        with pytest.raises(InvalidStatus) as anonymous:
            connect(ws_url(server, "/v1/cell/desktop/websockify"))
        assert anonymous.value.response.status_code == 401
        # A terminal token is not a desktop token.
        other = http.post("/v1/cell/terminal-tokens").json()["token"]
        with pytest.raises(InvalidStatus) as wrong:
            connect(ws_url(server, f"/v1/cell/desktop/websockify?token={other}"))
        assert wrong.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as closed:  # a key, but no VNC server listens
            connect(
                ws_url(server, "/v1/cell/desktop/websockify"),
                additional_headers={"Authorization": http.headers["Authorization"]},
            )
        assert closed.value.response.status_code == 502
        assert b"port_closed" in closed.value.response.body


@pytest.fixture
def desktop_server(
    make_server: ServerFactory,
    make_settings: SettingsFactory,
    full_image: str,  # noqa: F811
    scripted: Scripted,
) -> Iterator[Live]:
    settings = make_settings(image=full_image).model_copy(
        update={"limits": CellLimits(memory_mb=1536, pids=1024, shm_mb=128, workspace_mb=256)}
    )
    with make_server(settings, customize=scripted.install) as live:
        yield live


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_rfb_through_the_bridge_and_the_viewer_in_chromium(
    desktop_server: Live, scripted: Scripted
) -> None:
    live = desktop_server
    with add_user(live, "alice") as http, add_user(live, "bob") as bob:
        made = http.get("/v1/cell/desktop", timeout=120)
        assert made.status_code == 200, made.text
        desktop = made.json()
        assert desktop["view_only"] is True
        assert (desktop["display"], desktop["width"], desktop["height"]) == (":99", 1280, 800)
        with connect(ws_url(live, desktop["websocket"]), open_timeout=60) as ws:
            assert ws.recv(timeout=30)[:12] == b"RFB 003.008\n"  # the VNC server's hello
            ran = http.post(
                "/v1/cell/exec", json={"language": "shell", "code": "ls /sys/class/net"}
            ).json()
            assert ran["stdout"].split() == ["lo"]
        # Bob's token opens bob's cell, where no desktop runs.
        bobs = bob.post("/v1/cell/terminal-tokens").json()["token"]
        with pytest.raises(InvalidStatus):
            connect(ws_url(live, f"/v1/cell/desktop/websockify?token={bobs}"))
        viewer_shows_the_browser_agent(live, http, desktop["url"], scripted)


def the_browser_agent_opens_a_red_page(http: httpx.Client, scripted: Scripted) -> None:
    """A red page served in the cell, and a script: the coordinator has the browser open it."""
    http.put("/v1/files/raw", params={"path": "site/index.html"}, content=PAGE.encode())
    serve = "cd site && python3 -m http.server 8124 --bind 127.0.0.1 >/dev/null 2>&1 &"
    http.post("/v1/cell/exec", json={"language": "shell", "code": serve, "background": True})

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = returned(messages)
        if role(info) == "coordinator":
            return text("opened") if done else call("delegate_browser", task="open the page")
        return text("done") if done else call("open", url="http://127.0.0.1:8124/index.html")

    scripted.script = script


def viewer_shows_the_browser_agent(
    live: Live, http: httpx.Client, url: str, scripted: Scripted
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing on the host: scripts/setup installs it")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    the_browser_agent_opens_a_red_page(http, scripted)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(live.url + url)
        page.wait_for_function(
            "window.agentcellDesktop && document.querySelector('#screen canvas')"
        )
        assert page.url.endswith("/v1/cell/desktop/")  # the token left the address bar
        assert page.evaluate("window.agentcellDesktop.viewOnly") is True
        session = http.post("/v1/sessions", json={"title": "watch"}).json()["id"]
        reply = http.post(
            f"/v1/sessions/{session}/messages", json={"content": "open it"}, timeout=300
        )
        assert reply.status_code == 200, reply.text
        # The agent's Chromium is on the display: the canvas shows its red page.
        page.wait_for_function(RED_ON_CANVAS, timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "desktop.png"))  # what the user saw
        page.click("#control")
        assert page.evaluate("window.agentcellDesktop.viewOnly") is False
        assert page.get_attribute("#control", "aria-pressed") == "true"
        page.click("#control")
        assert page.evaluate("window.agentcellDesktop.viewOnly") is True
        browser.close()


# Count the canvas's strongly red pixels (the page's background), on a coarse grid.
RED_ON_CANVAS = """() => {
  const c = document.querySelector('#screen canvas');
  if (!c || !c.width) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let red = 0, all = 0;
  for (let i = 0; i < d.length; i += 4 * 97) {
    all++;
    if (d[i] > 180 && d[i + 1] < 60 && d[i + 2] < 60) red++;
  }
  return red > all / 4;
}"""
