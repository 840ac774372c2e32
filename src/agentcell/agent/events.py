"""What a turn of the agent reports as it runs. The API sends each as one SSE event whose name
is the class's ``event``; the store keeps them as the session's visible history."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

AgentName = Literal["coordinator", "coder", "browser"]


@dataclass(frozen=True)
class AgentEvent:
    event: ClassVar[str]

    def payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Text(AgentEvent):
    """A piece of an agent's text as the model streams it."""

    event: ClassVar[str] = "text"
    agent: AgentName
    text: str


@dataclass(frozen=True)
class ToolCall(AgentEvent):
    event: ClassVar[str] = "tool_call"
    agent: AgentName
    tool: str
    call_id: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ToolResult(AgentEvent):
    event: ClassVar[str] = "tool_result"
    agent: AgentName
    tool: str
    call_id: str
    content: str  # trimmed for display; the model saw the whole result
    ok: bool = True


@dataclass(frozen=True)
class AgentStep(AgentEvent):
    """The coordinator handed a task to a sub-agent (``start``), or got its answer (``end``)."""

    event: ClassVar[str] = "agent"
    agent: AgentName
    action: Literal["start", "end"]
    task: str = ""
    ok: bool = True  # on "end": False when the sub-agent failed or was stopped


@dataclass(frozen=True)
class Usage:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0


@dataclass(frozen=True)
class Done(AgentEvent):
    """The turn's end: the final answer, usage, and the model messages to persist (JSON)."""

    event: ClassVar[str] = "done"
    output: str
    usage: Usage = field(default_factory=Usage)
    messages_json: bytes = field(default=b"[]", repr=False)

    def payload(self) -> dict[str, Any]:
        return {"output": self.output, "usage": dataclasses.asdict(self.usage)}


@dataclass(frozen=True)
class Failed(AgentEvent):
    event: ClassVar[str] = "error"
    code: str
    message: str
    hint: str = ""
