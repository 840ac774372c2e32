"""Server-sent events (the text/event-stream format), and the events of exec and chat streams."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TypeAlias

from agentcell.client._http import error_from
from agentcell.errors import AgentcellError
from agentcell.schemas import ChatAgent, ChatDone, ChatText, ChatToolCall, ChatToolResult, ExitEvent


@dataclass(frozen=True, slots=True)
class StdoutEvent:
    data: str


@dataclass(frozen=True, slots=True)
class StderrEvent:
    data: str


ExecEvent: TypeAlias = StdoutEvent | StderrEvent | ExitEvent


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str = ""


@dataclass
class SSEParser:
    """The text/event-stream format, line by line (WHATWG HTML §9.2.6), minus ``retry``."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str = ""

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its end); a blank line completes an event."""
        if not line:
            sse = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
            had_data = bool(self._data)
            self._event, self._data = "", []
            return sse if had_data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def exec_event(sse: ServerSentEvent) -> ExecEvent | None:
    """The event an exec stream's SSE event stands for; ``error`` raises; unknown ones: None."""
    if sse.event == "stdout":
        return StdoutEvent(json.loads(sse.data)["data"])
    if sse.event == "stderr":
        return StderrEvent(json.loads(sse.data)["data"])
    if sse.event == "exit":
        return ExitEvent.model_validate_json(sse.data)
    if sse.event == "error":
        raise error_from(json.loads(sse.data))
    return None


class ExecEvents:
    """An exec stream's lines in, output events out; the exit event is kept until the end."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._exit: ExitEvent | None = None

    def feed(self, line: str) -> StdoutEvent | StderrEvent | None:
        sse = self._parser.feed(line)
        event = exec_event(sse) if sse and self._exit is None else None
        if isinstance(event, ExitEvent):
            self._exit = event
            return None
        return event

    def exit(self) -> ExitEvent:
        if self._exit is None:
            raise AgentcellError(
                "the exec stream ended before its exit event",
                hint="the server or the connection went away; see the audit log, then retry",
            )
        return self._exit


ChatEvent: TypeAlias = ChatText | ChatToolCall | ChatToolResult | ChatAgent | ChatDone

_CHAT_EVENTS: dict[str, type[ChatEvent]] = {
    "text": ChatText,
    "tool_call": ChatToolCall,
    "tool_result": ChatToolResult,
    "agent": ChatAgent,
    "done": ChatDone,
}


def chat_event(sse: ServerSentEvent) -> ChatEvent | None:
    """The event a chat stream's SSE event stands for; ``error`` raises; unknown ones: None."""
    if sse.event == "error":
        raise error_from(json.loads(sse.data))
    model = _CHAT_EVENTS.get(sse.event)
    return model.model_validate_json(sse.data) if model else None


class ChatEvents:
    """A chat stream's lines in, typed events out; it must end with ``done``."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.done: ChatDone | None = None

    def feed(self, line: str) -> ChatEvent | None:
        sse = self._parser.feed(line)
        event = chat_event(sse) if sse and self.done is None else None
        if isinstance(event, ChatDone):
            self.done = event
        return event

    def check_done(self) -> None:
        if self.done is None:
            raise AgentcellError(
                "the chat stream ended before its done event",
                hint="the server or the connection went away; the turn was not kept, send the "
                "message again",
            )
