"""Two API servers (real ``agentcell serve`` processes, each with its own data dir) on one
PostgreSQL database: a session's turn lock lives in the database, so while a turn started
through one server runs, a second turn of that session is refused (409) by the other too, and
once it is done the other server takes the next turn, with the first in its history."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from agentcell.client import SSEParser
from agentcell.config import Settings
from tests.conftest import RUN_ID, TEST_LABEL, sweep_server
from tests.openai_server import ChatServer, Reply
from tests.postgres import PostgresServer, database
from tests.waiting import wait_until

pytestmark = pytest.mark.docker

AGENTCELL = str(Path(sys.executable).with_name("agentcell"))
ADMIN_TOKEN = "adm_" + secrets.token_urlsafe(16)  # one token for both servers
MODEL_KEY = "sk-test-local"
SSE = {"Accept": "text/event-stream"}


class Model:
    """Answers ``#<n>: <prompt>`` (n: the user prompts it was sent, history included); a prompt
    "slow" waits until the test opens the gate."""

    def __init__(self) -> None:
        self.asked_slow = threading.Event()
        self.gate = threading.Event()

    def reply(self, body: dict[str, Any]) -> Reply:
        prompts = [m["content"] for m in body["messages"] if m["role"] == "user"]
        if prompts[-1] == "slow":
            self.asked_slow.set()
            self.gate.wait(timeout=120)
        return {"content": f"#{len(prompts)}: {prompts[-1]}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"the server at {url} exited ({proc.returncode}):\n{log.read_text()}")
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def serving(
    data: Path, db_url: str, model_url: str, image: str, client: docker.DockerClient
) -> Iterator[str]:
    """``agentcell serve`` on its own data dir and port; its cells are swept afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCELL_")}
    env.update(
        AGENTCELL_DATABASE_URL=db_url,
        AGENTCELL_ADMIN_TOKEN=ADMIN_TOKEN,
        AGENTCELL_MODEL="openai:scripted",
        AGENTCELL_MODEL_BASE_URL=model_url,
        AGENTCELL_MODEL_API_KEY=MODEL_KEY,
        AGENTCELL_IMAGE=image,
        AGENTCELL_POOL_SIZE="0",
        AGENTCELL_LIMITS__MEMORY_MB="256",
        AGENTCELL_LIMITS__WORKSPACE_MB="64",
        AGENTCELL_LABELS=json.dumps({TEST_LABEL: RUN_ID}),
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = data.with_suffix(".log")
    cmd = [AGENTCELL, "serve", "--port", str(port), "--data-dir", str(data)]
    with log.open("wb") as out, subprocess.Popen(cmd, env=env, stdout=out, stderr=out) as proc:
        try:
            wait_until(f"the server at {url} answers", lambda: _answers(url, proc, log), 90)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            sweep_server(client, Settings(data_dir=data))


def _events(response: httpx.Response) -> list[str]:
    parser = SSEParser()
    return [sse.event for line in response.iter_lines() if (sse := parser.feed(line))]


def test_a_turn_on_one_server_holds_its_session_on_the_other(
    tmp_path: Path,
    postgres_server: PostgresServer,
    minimal_image: str,
    docker_client: docker.DockerClient,
) -> None:
    model = Model()
    with (
        database(postgres_server) as db_url,
        ChatServer(model.reply) as chat,
        serving(tmp_path / "a", db_url, chat.url, minimal_image, docker_client) as a,
        serving(tmp_path / "b", db_url, chat.url, minimal_image, docker_client) as b,
    ):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        made = httpx.post(f"{a}/v1/users", json={"name": "alice"}, headers=admin, timeout=60)
        auth = {"Authorization": f"Bearer {made.json()['api_key']}"}
        with (
            httpx.Client(base_url=a, headers=auth, timeout=60) as via_a,
            httpx.Client(base_url=b, headers=auth, timeout=60) as via_b,
        ):
            session = via_b.post("/v1/sessions").json()["id"]  # made through b, used through a
            other = via_a.post("/v1/sessions").json()["id"]
            path = f"/v1/sessions/{session}/messages"
            try:
                with via_a.stream("POST", path, json={"content": "slow"}, headers=SSE) as first:
                    assert first.status_code == 200, first.read()
                    assert model.asked_slow.wait(60), "the turn did not reach the model"
                    for via in (via_b, via_a):
                        refused = via.post(path, json={"content": "me too"})
                        assert refused.status_code == 409, refused.text
                        assert refused.json()["error"]["code"] == "conflict"
                        assert "already running" in refused.json()["error"]["message"]
                    # b serves the user's other sessions meanwhile
                    hi = via_b.post(f"/v1/sessions/{other}/messages", json={"content": "hi"})
                    assert hi.json()["content"] == "#1: hi", hi.text
                    model.gate.set()
                    assert _events(first)[-1] == "done"
            finally:
                model.gate.set()  # never leave a model request hanging
            second = via_b.post(path, json={"content": "next"})
            assert second.status_code == 200, second.text
            assert second.json()["content"] == "#2: next"  # a's turn is in b's history
            contents = [m["content"] for m in via_a.get(path).json()]
            assert contents == ["slow", "#1: slow", "next", "#2: next"]
