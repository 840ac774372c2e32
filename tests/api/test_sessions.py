"""Chat sessions through the HTTP API, against a live server, real cells and a scripted model."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from pydantic_ai import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo

from agentcell import schemas
from agentcell.agent import events as agent_events
from agentcell.api.routes import sessions as sessions_route
from agentcell.client import SSEParser
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.scripted import Scripted, call, echo, prompts, returned, role, text

pytestmark = pytest.mark.docker

SSE = {"Accept": "text/event-stream"}
Event = tuple[str, dict[str, Any]]


def client(live: Live, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def add_user(live: Live, name: str) -> httpx.Client:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    made = httpx.post(f"{live.url}/v1/users", json={"name": name}, headers=admin, timeout=60)
    assert made.status_code == 201, made.text
    return client(live, made.json()["api_key"])


@pytest.fixture
def alice(chat_server: Live) -> Iterator[httpx.Client]:
    with add_user(chat_server, "alice") as http:
        yield http


def new_session(http: httpx.Client, title: str = "") -> str:
    made = http.post("/v1/sessions", json={"title": title})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def read_events(response: httpx.Response) -> list[Event]:
    parser = SSEParser()
    found = []
    for line in response.iter_lines():
        if sse := parser.feed(line):
            found.append((sse.event, json.loads(sse.data)))
    return found


def stream_turn(http: httpx.Client, session_id: str, content: str) -> list[Event]:
    path = f"/v1/sessions/{session_id}/messages"
    with http.stream("POST", path, json={"content": content}, headers=SSE) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return read_events(r)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert body["error"]["code"] == code
    return dict(body["error"])


def chat_audit(http: httpx.Client) -> list[dict[str, Any]]:
    events = http.get("/v1/audit").json()["events"]
    return [e for e in events if e["action"] == "chat"]


# --- a coordinator that hands a python task to the coder ---------------------------------------


def delegating(code: str, answer: str = "The answer is 42.") -> Any:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        back = returned(messages)
        if role(info) == "coordinator":
            return text(answer) if back else call("delegate_coder", task="compute 6*7")
        return text(f"coder: {back[0].content}") if back else call("run_python", code=code)

    return script


# --- sessions ----------------------------------------------------------------------------------


def test_create_list_get_delete(alice: httpx.Client) -> None:
    bare = alice.post("/v1/sessions")
    assert bare.status_code == 201, bare.text
    first = bare.json()
    assert first["id"].startswith("s_")
    assert first["title"] == ""
    assert first["created_at"]
    titled = alice.post("/v1/sessions", json={"title": "plans"}).json()
    assert titled["title"] == "plans"
    assert_error(alice.post("/v1/sessions", json={"title": "x" * 201}), 422, "invalid_request")
    assert_error(alice.post("/v1/sessions", json={"bogus": 1}), 422, "invalid_request")

    listed = alice.get("/v1/sessions").json()
    assert {s["id"] for s in listed} == {first["id"], titled["id"]}
    got = alice.get(f"/v1/sessions/{titled['id']}").json()
    assert got["id"] == titled["id"]
    assert got["title"] == "plans"
    assert alice.get(f"/v1/sessions/{titled['id']}/messages").json() == []

    assert alice.delete(f"/v1/sessions/{titled['id']}").status_code == 204
    assert_error(alice.get(f"/v1/sessions/{titled['id']}"), 404, "not_found")
    assert_error(alice.delete(f"/v1/sessions/{titled['id']}"), 404, "not_found")
    assert [s["id"] for s in alice.get("/v1/sessions").json()] == [first["id"]]
    actions = [e["action"] for e in alice.get("/v1/audit").json()["events"]]
    assert actions.count("session.create") == 2
    assert actions.count("session.delete") == 1


def test_chat_answers_and_keeps_the_turn(alice: httpx.Client) -> None:
    session_id = new_session(alice)
    path = f"/v1/sessions/{session_id}/messages"

    reply = alice.post(path, json={"content": "hello there"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["content"] == "#1: hello there"
    assert body["events"] == [{"event": "text", "agent": "coordinator", "text": "#1: hello there"}]
    assert body["usage"]["requests"] == 1

    again = alice.post(path, json={"content": "again"}).json()
    assert again["content"] == "#2: again"  # the model saw the first turn

    messages = alice.get(path).json()
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello there"),
        ("assistant", "#1: hello there"),
        ("user", "again"),
        ("assistant", "#2: again"),
    ]
    assert messages[0]["events"] == []
    assert messages[1]["events"] == body["events"]
    assert messages[0]["id"] < messages[1]["id"] < messages[2]["id"]
    assert alice.get(f"/v1/sessions/{session_id}").json()["title"] == "hello there"

    audit = chat_audit(alice)
    assert [(e["target"], e["ok"]) for e in audit] == [(session_id, True), (session_id, True)]
    assert audit[0]["detail"] == "again"

    assert_error(alice.post(path, json={"content": ""}), 422, "invalid_request")
    assert_error(alice.post(path, json={}), 422, "invalid_request")
    assert_error(
        alice.post("/v1/sessions/s_nope/messages", json={"content": "x"}), 404, "not_found"
    )


def test_history_survives_a_restart(
    make_server: ServerFactory, make_settings: SettingsFactory
) -> None:
    """A new server on the same data dir replays the first turn's messages to the model."""
    settings = make_settings()
    scripted = Scripted(echo)
    with make_server(settings, scripted.install) as live, add_user(live, "alice") as http:
        key = http.headers["Authorization"]
        session_id = new_session(http)
        first = http.post(f"/v1/sessions/{session_id}/messages", json={"content": "remember 42"})
        assert first.json()["content"] == "#1: remember 42"

    scripted.seen.clear()
    with (
        make_server(settings, scripted.install) as live,
        httpx.Client(base_url=live.url, timeout=60, headers={"Authorization": key}) as http,
    ):
        second = http.post(f"/v1/sessions/{session_id}/messages", json={"content": "and?"})
        assert second.status_code == 200, second.text
        assert second.json()["content"] == "#2: and?"
        assert len(http.get(f"/v1/sessions/{session_id}/messages").json()) == 4

    [sent] = scripted.seen
    assert prompts(sent) == ["remember 42", "and?"]
    answers = [
        part.content
        for message in sent
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, TextPart)
    ]
    assert answers == ["#1: remember 42"]


# --- the SSE stream ----------------------------------------------------------------------------


def names(events: list[Event]) -> list[str]:
    """Each event as a short name; runs of text from one agent count once."""
    out: list[str] = []
    for name, data in events:
        if name == "agent":
            short = f"agent:{data['agent']}:{data['action']}"
        elif name in ("tool_call", "tool_result"):
            short = f"{name}:{data['tool']}"
        elif name == "text":
            short = f"text:{data['agent']}"
        else:
            short = name
        if not out or out[-1] != short or not short.startswith("text:"):
            out.append(short)
    return out


def test_sse_event_order(chat_server: Live, scripted: Scripted, alice: httpx.Client) -> None:
    """The order contract of a turn's stream: a hand-off shows as the sub-agent's start, its
    tool calls each followed by its result, its text, its end; then the coordinator's answer,
    then exactly one done, last, sent once the turn is kept."""
    assert chat_server
    scripted.script = delegating("print(6 * 7)")
    session_id = new_session(alice)
    events = stream_turn(alice, session_id, "what is 6*7?")

    assert names(events) == [
        "agent:coder:start",
        "tool_call:run_python",
        "tool_result:run_python",
        "text:coder",
        "agent:coder:end",
        "text:coordinator",
        "done",
    ]
    start, end = (d for n, d in events if n == "agent")
    assert start["task"] == "compute 6*7"
    assert end["ok"] is True
    calls = {d["call_id"]: d for n, d in events if n == "tool_call"}
    results = [d for n, d in events if n == "tool_result"]
    assert {r["call_id"] for r in results} == set(calls)
    python_result = next(r for r in results if r["tool"] == "run_python")
    assert python_result["content"].strip() == "42"  # ran in the real cell
    assert python_result["ok"] is True
    assert calls[python_result["call_id"]]["args"] == {"code": "print(6 * 7)"}
    answer = "".join(d["text"] for n, d in events if n == "text" and d["agent"] == "coordinator")
    assert answer == "The answer is 42."
    done = events[-1][1]
    assert done["output"] == "The answer is 42."
    assert done["usage"]["requests"] == 4
    assert done["usage"]["tool_calls"] == 2
    for name, data in events:  # every event's data parses as its documented schema
        schema = EVENT_SCHEMAS[name]
        assert set(data) == set(schema.model_fields), name

    # kept before done went out; kept as streamed, with the text pieces joined
    asked, answered = alice.get(f"/v1/sessions/{session_id}/messages").json()
    assert asked["content"] == "what is 6*7?"
    assert answered["content"] == "The answer is 42."
    assert names([(e.pop("event"), e) for e in answered["events"]]) == names(events)[:-1]
    assert answered["events"][-1]["text"] == "The answer is 42."


def test_one_turn_at_a_time(chat_server: Live, scripted: Scripted, alice: httpx.Client) -> None:
    assert chat_server
    go_on = threading.Event()

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        while prompts(messages)[-1] == "slow" and not go_on.is_set():
            await asyncio.sleep(0.02)
        return echo(messages, info)

    scripted.script = slow
    busy, other = new_session(alice), new_session(alice)
    path = f"/v1/sessions/{busy}/messages"
    with alice.stream("POST", path, json={"content": "slow"}, headers=SSE) as first:
        assert first.status_code == 200
        with httpx.Client(base_url=alice.base_url, headers=alice.headers, timeout=60) as second:
            refused = second.post(path, json={"content": "me too"})
            err = assert_error(refused, 409, "conflict")
            assert "already running" in err["message"]
            assert err["hint"]
            # another session of the same user is not held up
            assert (
                second.post(f"/v1/sessions/{other}/messages", json={"content": "hi"}).json()[
                    "content"
                ]
                == "#1: hi"
            )
            go_on.set()
            assert [n for n, _ in read_events(first)][-1] == "done"
        assert alice.post(path, json={"content": "next"}).json()["content"] == "#2: next"
    assert len(alice.get(path).json()) == 4  # the refused message was not kept


def test_closing_the_stream_stops_the_turn(
    chat_server: Live, scripted: Scripted, alice: httpx.Client
) -> None:
    """The client hangs up during a tool call: the code in the cell is stopped, nothing is
    kept, the audit says so, and the session takes the next message."""
    assert chat_server
    late = (
        "import time\nopen('started.txt', 'w').write('yes')\n"
        "time.sleep(3)\nopen('late.txt', 'w').write('too late')\n"
    )
    scripted.script = delegating(late)
    session_id = new_session(alice)
    path = f"/v1/sessions/{session_id}/messages"
    with alice.stream("POST", path, json={"content": "take your time"}, headers=SSE) as r:
        parser, lines = SSEParser(), r.iter_lines()
        for line in lines:
            sse = parser.feed(line)
            if sse and sse.event == "tool_call" and json.loads(sse.data)["tool"] == "run_python":
                break
        deadline = time.monotonic() + 60  # hang up once the code runs
        while alice.get("/v1/files/raw", params={"path": "started.txt"}).status_code == 404:
            if time.monotonic() > deadline:  # say why: what the turn and the audit said
                rest = [(e.event, e.data) for line in lines if (e := parser.feed(line))]
                pytest.fail(f"the code did not start: {rest}, {alice.get('/v1/audit').text}")
            time.sleep(0.05)
    hung_up = time.monotonic()

    deadline = hung_up + 20
    while not (audit := chat_audit(alice)) and time.monotonic() < deadline:
        time.sleep(0.05)
    [stopped] = audit
    assert stopped["ok"] is False
    assert "closed the stream" in stopped["detail"]
    assert stopped["target"] == session_id
    time.sleep(max(0.0, hung_up + 4 - time.monotonic()))  # the code would have finished by now
    missing = alice.get("/v1/files/raw", params={"path": "late.txt"})
    assert missing.status_code == 404, "the code kept running after the client hung up"
    assert alice.get(path).json() == []

    scripted.script = echo
    assert (
        alice.post(path, json={"content": "still there?"}).json()["content"] == "#1: still there?"
    )


def test_deleting_a_session_stops_its_turn(
    chat_server: Live, scripted: Scripted, alice: httpx.Client
) -> None:
    assert chat_server

    async def stuck(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(60)
        return text(prompts(messages)[-1])

    scripted.script = stuck
    session_id = new_session(alice)
    path = f"/v1/sessions/{session_id}/messages"
    with alice.stream("POST", path, json={"content": "forever"}, headers=SSE) as r:
        assert alice.delete(f"/v1/sessions/{session_id}").status_code == 204
        events = read_events(r)  # the stream ends, with the reason
    assert [n for n, _ in events] == ["error"]
    assert events[0][1]["code"] == "turn_stopped"
    assert "deleted" in events[0][1]["message"]
    assert_error(alice.get(path), 404, "not_found")
    [stopped] = chat_audit(alice)
    assert stopped["ok"] is False


def test_a_quiet_turn_sends_keep_alive_comments(
    chat_server: Live, scripted: Scripted, alice: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the agent works without a word, SSE comments keep proxies from hanging up."""
    assert chat_server
    monkeypatch.setattr(sessions_route, "HEARTBEAT_S", 0.05)

    async def thinking(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(0.5)
        return echo(messages, info)

    scripted.script = thinking
    session_id = new_session(alice)
    path = f"/v1/sessions/{session_id}/messages"
    with alice.stream("POST", path, json={"content": "hm"}, headers=SSE) as r:
        lines = list(r.iter_lines())
    first_event = next(i for i, line in enumerate(lines) if line.startswith("event:"))
    assert lines[:first_event].count(": working") >= 3
    assert lines[-3:] == ["event: done", lines[-2], ""]


# --- failures ----------------------------------------------------------------------------------


def test_no_model_configured(make_server: ServerFactory, make_settings: SettingsFactory) -> None:
    with make_server(make_settings(model="")) as live, add_user(live, "alice") as http:
        session_id = new_session(http)
        path = f"/v1/sessions/{session_id}/messages"
        for headers in ({}, SSE):
            err = assert_error(
                http.post(path, json={"content": "hi"}, headers=headers),
                503,
                "model_not_configured",
            )
            assert "AGENTCELL_MODEL" in err["hint"]
        assert http.get(path).json() == []
        assert http.get("/v1/cell").json()["state"] == "none"  # no cell started for nothing
        audit = chat_audit(http)
        assert [(e["target"], e["ok"]) for e in audit] == [(session_id, False)] * 2
        assert audit[0]["detail"].startswith("model_not_configured: ")


def test_a_failed_turn_keeps_nothing(
    chat_server: Live, scripted: Scripted, alice: httpx.Client
) -> None:
    assert chat_server

    def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if prompts(messages)[-1] == "fine":
            return echo(messages, info)
        raise ModelHTTPError(500, "scripted", {"message": "the model fell over"})

    scripted.script = broken
    session_id = new_session(alice)
    path = f"/v1/sessions/{session_id}/messages"

    err = assert_error(alice.post(path, json={"content": "boom"}), 502, "model_error")
    assert err["message"]
    events = stream_turn(alice, session_id, "boom")
    assert [n for n, _ in events] == ["error"]
    assert events[0][1]["code"] == "model_error"
    assert set(events[0][1]) == {"code", "message", "hint"}
    assert alice.get(path).json() == []
    assert [e["ok"] for e in chat_audit(alice)] == [False, False]

    assert alice.post(path, json={"content": "fine"}).json()["content"] == "#1: fine"


# --- users apart -------------------------------------------------------------------------------


def test_a_session_works_in_its_owners_cell_only(
    chat_server: Live, scripted: Scripted, alice: httpx.Client
) -> None:
    with add_user(chat_server, "bob") as bob:
        assert bob.put("/v1/files/raw", params={"path": "bob.txt"}, content=b"bob-secret")
        assert alice.put("/v1/files/raw", params={"path": "alice.txt"}, content=b"alice-own")
        look = "import os\nfor n in sorted(os.listdir('.')): print(n, open(n).read())"
        scripted.script = delegating(look)
        session_id = new_session(alice)
        events = stream_turn(alice, session_id, "what is in my workspace?")
        [result] = [d for n, d in events if n == "tool_result" and d["tool"] == "run_python"]
        assert "alice.txt alice-own" in result["content"]
        assert "bob" not in result["content"]

        # bob cannot see, use or remove alice's session: it does not exist for him
        base = f"/v1/sessions/{session_id}"
        assert_error(bob.get(base), 404, "not_found")
        assert_error(bob.get(f"{base}/messages"), 404, "not_found")
        assert_error(bob.post(f"{base}/messages", json={"content": "hi"}), 404, "not_found")
        assert_error(bob.delete(base), 404, "not_found")
        assert bob.get("/v1/sessions").json() == []
        assert len(alice.get(f"{base}/messages").json()) == 2
        assert chat_audit(bob) == []


# --- schemas -----------------------------------------------------------------------------------

EVENT_SCHEMAS: dict[str, type[BaseModel]] = {
    "text": schemas.ChatText,
    "tool_call": schemas.ChatToolCall,
    "tool_result": schemas.ChatToolResult,
    "agent": schemas.ChatAgent,
    "done": schemas.ChatDone,
    "error": schemas.ErrorBody,
}


@pytest.mark.parametrize(
    "event",
    [
        agent_events.Text,
        agent_events.ToolCall,
        agent_events.ToolResult,
        agent_events.AgentStep,
        agent_events.Done,
        agent_events.Failed,
    ],
)
def test_event_schemas_match_the_agent_events(event: type[agent_events.AgentEvent]) -> None:
    """What the API documents for each SSE event is what the agent sends."""
    fields = {f.name for f in dataclasses.fields(event)}  # type: ignore[arg-type]
    if event is agent_events.Done:
        fields -= {"messages_json"}  # kept, never sent
    assert fields == set(EVENT_SCHEMAS[event.event].model_fields)
