"""Tool calls written as text by local models: the parser, and the model wrapper that makes them
real calls, with and without streaming (no cell needed)."""

from __future__ import annotations

from collections.abc import AsyncIterable

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo

from agentcell.agent.models import TextToolCallModel
from agentcell.agent.toolcalls import (
    TextToolCall,
    may_be_tool_call,
    parse_text_tool_calls,
    rewrite_response,
)
from tests.agent.conftest import scripted

TOOLS = {"add", "run_python"}


@pytest.mark.parametrize(
    ("text", "rest", "calls"),
    [
        (
            '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```',
            "",
            [TextToolCall("add", {"a": 1, "b": 2})],
        ),
        (
            'I will add them.\n```\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```\nDone.',
            "I will add them.\n\nDone.",
            [TextToolCall("add", {"a": 1, "b": 2})],
        ),
        (
            '<tool_call>\n{"name": "run_python", "arguments": {"code": "print(1)"}}\n</tool_call>',
            "",
            [TextToolCall("run_python", {"code": "print(1)"})],
        ),
        (  # two tags, arguments as a JSON string (OpenAI style)
            '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": 3, "b": 4}}</tool_call>',
            "",
            [TextToolCall("add", {"a": 1, "b": 2}), TextToolCall("add", {"a": 3, "b": 4})],
        ),
        (  # an unclosed tag at the end
            'Let me run it <tool_call>{"name": "run_python", "arguments": {"code": "1"}}',
            "Let me run it",
            [TextToolCall("run_python", {"code": "1"})],
        ),
        (  # bare JSON, "parameters" and the OpenAI function shape
            '{"name": "add", "parameters": {"a": 5, "b": 6}}',
            "",
            [TextToolCall("add", {"a": 5, "b": 6})],
        ),
        (
            '[{"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 1}}}]',
            "",
            [TextToolCall("add", {"a": 1, "b": 1})],
        ),
    ],
)
def test_text_tool_calls_are_found(text: str, rest: str, calls: list[TextToolCall]) -> None:
    assert parse_text_tool_calls(text, TOOLS) == (rest, calls)


@pytest.mark.parametrize(
    "text",
    [
        "The sum is 3.",
        '```json\n{"name": "unknown_tool", "arguments": {}}\n```',  # not one of ours
        '```python\nprint({"name": "add"})\n```',  # code, not JSON
        '```json\n{"name": "add", "arguments": [1, 2]}\n```',  # arguments not an object
        '{"result": 3}',
        "<tool_call>not json</tool_call>",
    ],
)
def test_other_text_is_left_alone(text: str) -> None:
    assert parse_text_tool_calls(text, TOOLS) == (text, [])


def test_responses_with_real_calls_are_not_rewritten() -> None:
    response = ModelResponse(
        parts=[
            TextPart('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'),
            ToolCallPart("run_python", {"code": "1"}),
        ]
    )
    assert rewrite_response(response, TOOLS) is response


def test_may_be_tool_call_decides_on_the_first_characters() -> None:
    assert may_be_tool_call("  ") is None
    assert may_be_tool_call("`") is None
    assert may_be_tool_call("<tool") is None
    assert may_be_tool_call("```json") is True
    assert may_be_tool_call('{"name"') is True
    assert may_be_tool_call("<tool_call>") is True
    assert may_be_tool_call("The answer") is False
    assert may_be_tool_call("<b>") is False


def local_model_script(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
    """Answers like a small local model: the tool call as fenced JSON, then the answer."""
    last = messages[-1]
    assert isinstance(last, ModelRequest)
    results = [p for p in last.parts if isinstance(p, ToolReturnPart)]
    if not results:
        return ModelResponse(
            parts=[
                TextPart('```json\n{"name": "add", "arguments": {"a": 40, "b": 2}}\n```'),
            ]
        )
    return ModelResponse(parts=[TextPart(f"The sum is {results[0].content}.")])


def adder() -> Agent[None, str]:
    agent: Agent[None, str] = Agent()

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return agent


async def test_the_wrapper_makes_text_calls_real() -> None:
    model = TextToolCallModel(scripted(local_model_script))
    result = await adder().run("add 40 and 2", model=model)
    assert result.output == "The sum is 42."
    calls = [
        p
        for m in result.all_messages()
        if isinstance(m, ModelResponse)
        for p in m.parts
        if isinstance(p, ToolCallPart)
    ]
    assert [(c.tool_name, c.args_as_dict()) for c in calls] == [("add", {"a": 40, "b": 2})]


async def test_the_wrapper_holds_back_streamed_text_calls() -> None:
    texts: list[str] = []

    async def handler(_ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        async for event in events:
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                texts.append(event.part.content)
            elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                texts.append(event.delta.content_delta)

    model = TextToolCallModel(scripted(local_model_script))
    result = await adder().run("add 40 and 2", model=model, event_stream_handler=handler)
    assert result.output == "The sum is 42."
    assert "".join(texts) == "The sum is 42."  # the JSON call never showed up as text
    assert len(texts) > 1  # and the answer still streamed in pieces


async def test_a_streamed_code_block_that_is_no_call_is_let_through() -> None:
    answer = "```python\nprint(1)\n```"

    def script(_messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(answer)])

    texts: list[str] = []

    async def handler(_ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        async for event in events:
            if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                texts.append(event.delta.content_delta)
            elif isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                texts.append(event.part.content)

    model = TextToolCallModel(scripted(script))
    result = await adder().run("show code", model=model, event_stream_handler=handler)
    assert result.output == answer
    assert "".join(texts) == answer
