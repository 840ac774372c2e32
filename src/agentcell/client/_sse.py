"""Server-sent events (the text/event-stream format), and the events of exec, chat and job log
streams."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TypeAlias

import httpx

from agentcell.client._http import error_from
from agentcell.errors import AgentcellError
from agentcell.schemas import (
    ChatAgent,
    ChatDone,
    ChatText,
    ChatToolCall,
    ChatToolResult,
    ExitEvent,
    JobLogChunk,
    JobLogEnd,
)


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


JobLogEvent: TypeAlias = JobLogChunk | JobLogEnd
FOLLOW_RETRIES = 6  # reconnections in a row without any text: 0.2 s, 0.4 s ... 5 s apart


class LogFollow:
    """A job log's SSE streams in, its chunks and end out, across reconnections. ``offset`` is
    where the next connection resumes (the last chunk's end, sent as Last-Event-ID), so no text
    is lost or shown twice when a connection drops."""

    def __init__(self, offset: int = 0, retries: int = FOLLOW_RETRIES) -> None:
        self.offset, self.retries = offset, retries
        self.end: JobLogEnd | None = None
        self._parser = SSEParser()
        self._drops = 0  # connections lost in a row, with no text between them

    def connected(self) -> None:
        self._parser = SSEParser()  # a new stream: nothing half-read carries over

    def feed(self, line: str) -> JobLogEvent | None:
        sse = self._parser.feed(line)
        if sse is None or self.end is not None:
            return None
        if sse.event == "log":
            chunk = JobLogChunk.model_validate_json(sse.data)
            if chunk.offset <= self.offset:  # already passed on before a reconnection
                return None
            self.offset, self._drops = chunk.offset, 0
            return chunk
        if sse.event == "end":
            self.end = JobLogEnd.model_validate_json(sse.data)
            return self.end
        if sse.event == "error":
            raise error_from(json.loads(sse.data))
        return None

    def dropped(self, error: AgentcellError | None) -> float:
        """A stream ended before the job's ``end``: by ``error``, or cleanly (None). The seconds
        to wait before reconnecting; an error answer raises, and so does LogStreamLost once the
        tries are used up."""
        if error is not None and not isinstance(error.__cause__, httpx.TransportError):
            raise error
        self._drops += 1
        if self._drops > self.retries:
            reason = error.message if error else "the stream kept ending before the job did"
            raise LogStreamLost(reason, self.offset) from error
        return float(min(0.2 * 2 ** (self._drops - 1), 5.0))


class LogStreamLost(AgentcellError, ConnectionError):
    """Following a job's log failed again and again (the server or the connection went away).
    The job is not affected; ``offset`` is where to follow it again from."""

    status_code = 503

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(
            f"lost the job's log stream: {reason}",
            hint=f"the job goes on; follow it again from offset {offset}",
        )
        self.offset = offset
