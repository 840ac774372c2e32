"""The real OpenAI-compatible provider code (what Ollama, vLLM, llama.cpp and LM Studio speak),
through a whole turn, against a tiny scripted chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic_ai import models

from agentcell.agent.events import Done, Failed, ToolResult
from agentcell.agent.models import build_model
from agentcell.agent.runner import run_turn
from tests.agent.conftest import collect
from tests.conftest import ManagerFactory, workspace_dir

pytestmark = pytest.mark.docker

KEY = "sk-test-local"
Reply = dict[str, Any]  # {"content": str} or {"tool": name, "args": {...}}


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


class ChatServer:
    """POST /v1/chat/completions, streamed (SSE) or not, answered by ``script``."""

    def __init__(self, script: Callable[[dict[str, Any]], Reply]) -> None:
        self.script = script
        self.requests: list[tuple[dict[str, Any], str]] = []  # body, Authorization header
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((body, self.headers.get("Authorization", "")))
                reply = outer.script(body)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in chunks(reply):
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                else:
                    data = json.dumps(completion(reply)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


def _tool_call(reply: Reply, n: int) -> dict[str, Any]:
    arguments = json.dumps(reply["args"])
    return {
        "index": 0,
        "id": f"call_{n}",
        "type": "function",
        "function": {"name": reply["tool"], "arguments": arguments},
    }


_calls = iter(range(1, 10_000))


def completion(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    if "tool" in reply:
        call = _tool_call(reply, next(_calls))
        del call["index"]
        message["tool_calls"] = [call]
    reason = "tool_calls" if "tool" in reply else "stop"
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
        "usage": USAGE,
    }


def chunks(reply: Reply) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "scripted",
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }

    yield chunk({"role": "assistant", "content": ""})
    if "tool" in reply:
        yield chunk({"tool_calls": [_tool_call(reply, next(_calls))]})
        yield chunk({}, "tool_calls")
    else:
        text = reply["content"]
        for start in range(0, len(text), 5):
            yield chunk({"content": text[start : start + 5]})
        yield chunk({}, "stop")
    yield {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "scripted",
        "choices": [],
        "usage": USAGE,
    }


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
