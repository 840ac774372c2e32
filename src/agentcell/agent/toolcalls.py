"""Tool calls that local models write as text instead of using the tool-calling API.

Many models served by Ollama, vLLM, llama.cpp or LM Studio answer with one of:

- a fenced JSON block: ```json {"name": "run_python", "arguments": {"code": "..."}} ```
- Hermes/Qwen tags: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
- the bare JSON object as the whole answer.

``parse_text_tool_calls`` finds those that name a known tool, and ``rewrite_response`` turns a
response without real tool calls into one with ``ToolCallPart``s, so the agent runs them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import (
    BaseToolCallPart,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
)

TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
FENCED = re.compile(r"```[ \t]*(?:json|tool_call|tool|javascript)?[ \t]*\n?(.*?)```", re.DOTALL)
MARKERS = ("```", "<tool_call>", "{")  # a text answer starting so may be a call: hold it back


@dataclass(frozen=True)
class TextToolCall:
    name: str
    args: dict[str, Any]


def parse_text_tool_calls(text: str, tools: Collection[str]) -> tuple[str, list[TextToolCall]]:
    """The text without the calls found in it, and the calls (only those naming a known tool)."""
    calls: list[TextToolCall] = []
    spans: list[tuple[int, int]] = []
    for pattern in (TAGGED, FENCED):
        for match in pattern.finditer(text):
            if any(start <= match.start() < end for start, end in spans):
                continue
            found = list(_calls_in(match.group(1), tools))
            if found:
                calls += found
                spans.append(match.span())
    if not calls:
        stripped = text.strip()
        if stripped.startswith(("{", "[")):
            found = list(_calls_in(stripped, tools))
            if found:
                return "", found
        return text, []
    rest = text
    for start, end in sorted(spans, reverse=True):
        rest = rest[:start] + rest[end:]
    return rest.strip(), calls


def _calls_in(blob: str, tools: Collection[str]) -> Iterator[TextToolCall]:
    try:
        data = json.loads(blob)
    except ValueError:
        return
    for item in data if isinstance(data, list) else [data]:
        call = _call_of(item, tools)
        if call is not None:
            yield call


def _call_of(item: object, tools: Collection[str]) -> TextToolCall | None:
    if not isinstance(item, dict):
        return None
    body: dict[str, Any] = item
    if isinstance(body.get("function"), dict):  # OpenAI's own shape, written out as text
        body = body["function"]
    name = body.get("name", body.get("tool"))
    if not isinstance(name, str) or name not in tools:
        return None
    args: object = next(
        (body[k] for k in ("arguments", "parameters", "args", "input") if k in body), {}
    )
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return TextToolCall(name, args)


def rewrite_response(response: ModelResponse, tools: Collection[str]) -> ModelResponse:
    """The response with text-written tool calls made real; unchanged when there are none, or
    when the model already used real tool calls."""
    if not tools or any(isinstance(p, BaseToolCallPart) for p in response.parts):
        return response
    parts: list[ModelResponsePart] = []
    changed = False
    for part in response.parts:
        if not isinstance(part, TextPart):
            parts.append(part)
            continue
        rest, calls = parse_text_tool_calls(part.content, tools)
        if not calls:
            parts.append(part)
            continue
        changed = True
        if rest:
            parts.append(dataclasses.replace(part, content=rest))
        parts += [ToolCallPart(call.name, call.args) for call in calls]
    return dataclasses.replace(response, parts=parts) if changed else response


def may_be_tool_call(text: str) -> bool | None:
    """Whether a text answer that begins so may be a call: True, False, or None (too short to
    tell yet)."""
    head = text.lstrip()
    if not head:
        return None
    if any(head.startswith(m) for m in MARKERS):
        return True
    if any(m.startswith(head) for m in MARKERS):
        return None
    return False
