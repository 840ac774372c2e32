"""The real OpenAI-compatible provider code (what Ollama, vLLM, llama.cpp and LM Studio speak),
through a whole turn, against a tiny scripted chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic_ai import models

from agentcell.agent.events import Done, Failed, ToolResult
from agentcell.agent.models import build_model
from agentcell.agent.runner import run_turn
from tests.agent.conftest import collect
from tests.conftest import ManagerFactory, workspace_dir
from tests.openai_server import ChatServer, Reply

pytestmark = pytest.mark.docker

KEY = "sk-test-local"


def coder_and_coordinator(body: dict[str, Any]) -> Reply:
    """Plays both agents, telling them apart by the tools offered."""
    tools = {t["function"]["name"] for t in body.get("tools", [])}
    messages = body["messages"]
    done = [m for m in messages if m["role"] == "tool"]
    if "delegate_coder" in tools:
        if not done:
            return {"tool": "delegate_coder", "args": {"task": "compute 6*7 and save it"}}
        return {"content": f"The coder says: {done[-1]['content']}"}
    if not done:
        return {"tool": "run_python", "args": {"code": "print(6 * 7)"}}
    if len(done) == 1:  # like a small local model: the call written as text
        call = {"name": "write_file", "arguments": {"path": "answer.txt", "content": "42"}}
        return {"content": f"<tool_call>\n{json.dumps(call)}\n</tool_call>"}
    return {"content": "6*7 is 42, saved in answer.txt"}


@pytest.fixture
def allow_local_model_requests() -> Iterator[None]:
    with models.override_allow_model_requests(True):
        yield


@pytest.mark.usefixtures("allow_local_model_requests")
async def test_a_turn_through_the_openai_compatible_provider(make_manager: ManagerFactory) -> None:
    with ChatServer(coder_and_coordinator) as server:
        async with make_manager(
            model="openai:scripted", model_base_url=server.url, model_api_key=KEY
        ) as manager:
            cell = await manager.ensure("alice")
            turn = await collect(
                run_turn(
                    settings=manager.settings,
                    cell=cell,
                    session_id="o1",
                    prompt="what is 6*7?",
                    history=[],
                )
            )
            assert (workspace_dir(manager, cell) / "answer.txt").read_text() == "42"
    done = turn.events[-1]
    assert isinstance(done, Done), turn.events
    assert done.output == "The coder says: 6*7 is 42, saved in answer.txt"
    assert done.usage.requests == 5
    assert done.usage.input_tokens == 5 * 20
    results = [(e.tool, e.content) for e in turn.events if isinstance(e, ToolResult)]
    assert results == [("run_python", "42"), ("write_file", "wrote 2 bytes to answer.txt")]
    assert all(auth == f"Bearer {KEY}" for _, auth in server.requests)
    assert all(body["model"] == "scripted" and body["stream"] for body, _ in server.requests)
    texts = "".join(e.text for e in turn.events if e.event == "text")  # type: ignore[attr-defined]
    assert "<tool_call>" not in texts


@pytest.mark.usefixtures("allow_local_model_requests")
async def test_a_model_server_that_is_down_fails_the_turn_clearly(
    make_manager: ManagerFactory,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # nobody listens there
    async with make_manager(
        model="openai:qwen2.5", model_base_url=url, model_api_key="sk-test-SECRET123"
    ) as manager:
        cell = await manager.ensure("alice")
        model = build_model(manager.settings)
        turn = await collect(
            run_turn(
                settings=manager.settings,
                cell=cell,
                session_id="o2",
                prompt="hi",
                history=[],
                model=model,
            )
        )
    [failed] = turn.events
    assert isinstance(failed, Failed)
    assert failed.code == "model_unreachable"
    assert url in failed.message
    assert url in failed.hint
    assert "SECRET123" not in failed.message + failed.hint
