"""The coder's ``serve`` tool on a live server, driven by a scripted model: "build me a small web
app and show it to me" ends with a link that works — the server runs as the user's job (listed,
cancelled like any), and a server that dies at once comes back to the model as such."""

from __future__ import annotations

import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo

from tests.api.test_sessions import alice  # noqa: F401 - a fixture
from tests.conftest import Live
from tests.scripted import Scripted, call, returned, role, text
from tests.waiting import wait_until

pytestmark = pytest.mark.docker
PAGE = "<!doctype html><title>Made by the coder</title><p>hello from the app</p>"


def coder_steps(*steps: ModelResponse) -> object:
    """The coordinator delegates, the coder takes ``steps``, then reports what its last tool
    said; the coordinator passes that on as the answer."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        back = returned(messages)
        if role(info) == "coordinator":
            return text(str(back[0].content)) if back else call("delegate_coder", task="app")
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done < len(steps):
            return steps[done]
        return text(str(back[-1].content))

    return script


def chat(http: httpx.Client, prompt: str) -> str:
    session = http.post("/v1/sessions", json={"title": "app"}).json()["id"]
    reply = http.post(f"/v1/sessions/{session}/messages", json={"content": prompt}, timeout=120)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["content"])


def test_build_me_a_web_app_and_show_it_to_me(
    chat_server: Live,
    scripted: Scripted,
    alice: httpx.Client,  # noqa: F811
) -> None:
    assert chat_server
    scripted.script = coder_steps(  # type: ignore[assignment]
        call("write_file", path="site/index.html", content=PAGE),
        call(
            "serve",
            command="cd site && python3 -m http.server 8080 --bind 127.0.0.1",
            port=8080,
            path="index.html",
        ),
    )
    answer = chat(alice, "build me a small web app and show it to me")
    assert "/v1/cell/ports/8080/index.html" in answer
    page = alice.get("/v1/cell/ports/8080/index.html")  # the link works
    assert page.status_code == 200
    assert "hello from the app" in page.text
    jobs = alice.get("/v1/jobs").json()["jobs"]
    (job,) = [j for j in jobs if j["name"] == "server on port 8080"]
    assert job["state"] == "running"
    assert job["id"] in answer  # the user is told how to stop it
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    wait_until(
        "the server is gone with its job",
        lambda: 8080 not in [p["port"] for p in alice.get("/v1/cell/ports").json()],
    )


def test_a_server_that_dies_at_once_is_reported_to_the_model(
    chat_server: Live,
    scripted: Scripted,
    alice: httpx.Client,  # noqa: F811
) -> None:
    assert chat_server
    seen: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        back = returned(messages)
        if role(info) == "coordinator":
            return text("reported") if back else call("delegate_coder", task="app")
        if back:
            seen.append(str(back[-1].content))
            return text("it failed")
        return call("serve", command="echo no such app >&2; exit 3", port=8081)

    scripted.script = script  # type: ignore[assignment]
    chat(alice, "serve it")
    assert "ended (failed) before port 8081 listened" in seen[0]
    assert ".agentcell/jobs/" in seen[0]  # where its output is
