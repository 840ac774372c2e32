"""JupyterLab (DESIGN §11, full image) through the port relay on a live server: its REST API
with the API key, a kernel over its WebSocket computing 1+1, the lab page in a browser's way
(a port token traded for a cookie); in the minimal image, a clear 400."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from agentcell.config import CellLimits
from tests.agent.conftest import full_image  # noqa: F401 - a fixture
from tests.api.test_sessions import add_user, assert_error
from tests.conftest import Live, ServerFactory, SettingsFactory

pytestmark = pytest.mark.docker


def test_the_minimal_image_has_no_jupyter(server: Live) -> None:
    with add_user(server, "alice") as http:
        refused = assert_error(http.post("/v1/cell/jupyter"), 400, "invalid_request")
        assert "AGENTCELL_IMAGE_PROFILE=full" in refused["hint"]


@pytest.fixture
def jupyter_server(
    make_server: ServerFactory,
    make_settings: SettingsFactory,
    full_image: str,  # noqa: F811
) -> Iterator[Live]:
    settings = make_settings(image=full_image).model_copy(
        update={"limits": CellLimits(memory_mb=1536, pids=1024, shm_mb=64, workspace_mb=256)}
    )
    with make_server(settings) as live:
        yield live


def execute_request(code: str) -> dict[str, object]:
    msg_id = uuid.uuid4().hex
    return {
        "header": {
            "msg_id": msg_id, "msg_type": "execute_request", "username": "test",
            "session": uuid.uuid4().hex, "version": "5.3", "date": "",
        },
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False},
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_jupyterlab_and_a_kernel_through_the_relay(jupyter_server: Live) -> None:
    live = jupyter_server
    with add_user(live, "alice") as http:
        started = http.post("/v1/cell/jupyter", timeout=180)
        assert started.status_code == 200, started.text
        jupyter = started.json()
        base = "/v1/cell/ports/absolute/8888/"
        assert jupyter["url"] == base + "lab"
        assert http.post("/v1/cell/jupyter", timeout=60).json()["url"] == jupyter["url"]  # once
        status = http.get(base + "api/status")
        assert status.status_code == 200, status.text
        kernel = http.post(base + "api/kernels", json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        channels = f"{base}api/kernels/{kernel.json()['id']}/channels"
        auth = {"Authorization": http.headers["Authorization"]}
        ws_url = live.url.replace("http://", "ws://") + channels
        with connect(ws_url, additional_headers=auth, open_timeout=60, max_size=None) as ws:
            request = execute_request("1+1")
            ws.send(json.dumps(request))
            result = None
            while result is None:
                message = json.loads(ws.recv(timeout=60))
                if message["msg_type"] == "execute_result":
                    result = message["content"]["data"]["text/plain"]
        assert result == "2"
        with httpx.Client(base_url=live.url, timeout=60, follow_redirects=True) as browser:
            lab = browser.get(jupyter["browser_url"])  # no key: the token, then the cookie
            assert lab.status_code == 200, lab.text[:300]
            assert lab.url.path == base + "lab"  # the token left the address
            assert base + "static/" in lab.text  # its assets are under the relay's path
