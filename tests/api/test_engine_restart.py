"""The Docker engine restarts under a live server: a private dockerd that this test starts,
stops and starts again (the machine's own engine is never touched)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerFactory, SettingsFactory
from tests.engines import PrivateEngine, private_engine

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(minimal_image: str) -> Iterator[PrivateEngine]:
    with private_engine(minimal_image) as started:
        yield started


def _events(response: httpx.Response) -> Iterator[tuple[str, dict[str, object]]]:
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))


# docker-py's unix-socket connection does not close a socket whose connect failed (the engine
# is down); the garbage collector closes it, with a ResourceWarning that is not ours.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_engine_restart_is_a_503_an_error_event_and_cells_come_back(
    engine: PrivateEngine, make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(docker_host=engine.url)
    with make_server(settings) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        admin = {"Authorization": f"Bearer {live.admin_token}"}
        key = http.post("/v1/users", json={"name": "eve"}, headers=admin).json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        wrote = http.post(
            "/v1/cell/exec", json={"code": "open('keep.txt', 'w').write('kept')"}, headers=auth
        )
        assert wrote.status_code == 200, wrote.text

        events: list[tuple[str, dict[str, object]]] = []
        started = threading.Event()

        def stream() -> None:
            code = "import time\nprint('go', flush=True)\ntime.sleep(300)"
            headers = {**auth, "Accept": "text/event-stream"}
            body = {"code": code, "timeout_s": 600}
            with http.stream(
                "POST", "/v1/cell/exec", json=body, headers=headers, timeout=None
            ) as r:
                for event in _events(r):
                    events.append(event)
                    started.set()

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert started.wait(60), "the exec did not start"
        engine.stop()
        reader.join(timeout=120)
        assert not reader.is_alive(), "the stream did not end when the engine went away"
        kinds = [e for e, _ in events]
        assert kinds[0] == "stdout"
        assert kinds[-1] == "error", events
        error = events[-1][1]
        assert error["code"] == "docker_unavailable"
        assert "engine went away" in str(error["message"])

        health = http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["docker"] is False
        down = http.post("/v1/cell/exec", json={"code": "print(1)"}, headers=auth)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "docker_unavailable"

        engine.start()
        assert http.get("/healthz").status_code == 200
        read = {"code": "print(open('keep.txt').read())"}
        back = http.post("/v1/cell/exec", json=read, headers=auth)
        assert back.status_code == 200, back.text
        assert back.json()["stdout"] == "kept\n"
