"""Scripted models for tests that go through the API: a ``FunctionModel`` whose answers a test
writes as a function of what the model is sent, streamed in small pieces like a real model's.
Real model requests are refused while these tests run."""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from agentcell.config import Settings

Reply = ModelResponse | Awaitable[ModelResponse]
Script = Callable[[list[ModelMessage], AgentInfo], Reply]
PIECE = 8  # characters per streamed text piece


class Scripted:
    """Answers with ``script``; keeps every request's messages (``seen``) for the test to read.

    ``install(app)`` makes the server's turns use it (``app.state.model_factory``)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[list[ModelMessage]] = []
        self._lock = threading.Lock()  # the server runs in another thread

    def model(self, _settings: Settings | None = None) -> FunctionModel:
        return FunctionModel(self._respond, stream_function=self._stream)

    def install(self, app: FastAPI) -> None:
        app.state.model_factory = self.model

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        with self._lock:
            self.seen.append(list(messages))
        reply = self.script(messages, info)
        return await reply if inspect.isawaitable(reply) else reply

    async def _stream(
        self, messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        response = await self._respond(messages, info)
        for index, part in enumerate(response.parts):
            if isinstance(part, TextPart):
                for start in range(0, len(part.content), PIECE):
                    yield part.content[start : start + PIECE]
            elif isinstance(part, ToolCallPart):
                delta = DeltaToolCall(
                    part.tool_name, part.args_as_json_str(), tool_call_id=part.tool_call_id
                )
                yield {index: delta}


def role(info: AgentInfo) -> str:
    """Which of the agents the model is answering, by the tools it was offered."""
    names = {tool.name for tool in info.function_tools}
    if "delegate_coder" in names:
        return "coordinator"
    if "run_python" in names:
        return "coder"
    return "browser"


def prompts(messages: list[ModelMessage]) -> list[str]:
    """Every user prompt in the messages, oldest first."""
    return [
        p.content
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, UserPromptPart) and isinstance(p.content, str)
    ]


def returned(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    """The tool results in the last request (what the model is reacting to)."""
    last = messages[-1]
    if not isinstance(last, ModelRequest):
        return []
    return [p for p in last.parts if isinstance(p, ToolReturnPart)]


def call(tool: str, **args: Any) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool, args)])


def text(content: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(content)])


def echo(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
    """Answers every prompt with how many it has seen and the last one."""
    seen = prompts(messages)
    return text(f"#{len(seen)}: {seen[-1] if seen else ''}")
