"""A tiny scripted chat-completions server on 127.0.0.1: what the OpenAI-compatible provider
(Ollama, vLLM, llama.cpp, LM Studio) is sent, answered by a test's script, streamed (SSE) or
not. Its handlers run in threads of their own, so a script may block one request while others
are answered."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = dict[str, Any]  # {"content": str} or {"tool": name, "args": {...}}


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
