"""Chat from the Python clients and the CLI (``agentcell chat``, ``agentcell sessions``), against
a live server with real cells and a scripted model."""

from __future__ import annotations

import io
import logging
import re
import sys
from typing import Any

import pytest
from pydantic_ai import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo

from agentcell.cli import main
from agentcell.client import (
    AsyncClient,
    ChatAgent,
    ChatDone,
    ChatText,
    ChatToolCall,
    ChatToolResult,
    Client,
)
from agentcell.errors import AgentcellError, NotFound
from tests.conftest import Live, ServerFactory, SettingsFactory
from tests.scripted import Scripted, call, echo, prompts, returned, role, text
from tests.test_client_cli import on_a_terminal

pytestmark = pytest.mark.docker

CLIENT_ENV = ("AGENTCELL_URL", "AGENTCELL_API_KEY", "AGENTCELL_ADMIN_TOKEN", "AGENTCELL_TIMEOUT_S")


def coding(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The coordinator hands 6*7 to the coder, who runs it in the cell."""
    back = returned(messages)
    if role(info) == "coordinator":
        return text("The answer is 42.") if back else call("delegate_coder", task="compute 6*7")
    return text(f"computed {back[0].content}") if back else call("run_python", code="print(6*7)")


def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if prompts(messages)[-1] == "fine":
        return echo(messages, info)
    raise ModelHTTPError(500, "scripted", {"message": "the model fell over"})


@pytest.fixture
def key(chat_server: Live, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh user, whose key the CLI finds in AGENTCELL_API_KEY."""
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    with chat_server.admin() as admin:
        api_key = admin.users_add("chatter").api_key
    monkeypatch.setenv("AGENTCELL_URL", chat_server.url)
    monkeypatch.setenv("AGENTCELL_API_KEY", api_key)
    return api_key


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def session_of(err: str) -> str:
    found = re.search(r"session (s_[0-9a-f]+)", err)
    assert found, err
    return found[1]


# --- CLI ---------------------------------------------------------------------------------------


def test_chat_one_shot_streams_the_turn(
    key: str, scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    assert key
    scripted.script = coding
    code, out, err = run(capsys, "chat", "what is 6*7?")
    assert code == 0, err
    assert out == "The answer is 42.\n"  # only the answer on stdout
    session_id = session_of(err)
    notes = [line for line in err.splitlines() if line.strip()]
    expected = [
        "→ coder: compute 6*7",
        'coder ▸ run_python({"code": "print(6*7)"})',
        "coder ◂ run_python: 42",
        "coder: computed 42",
        "← coder done",
    ]
    assert [n for n in notes if n in expected] == expected, err

    scripted.script = echo
    code, out, err = run(capsys, "chat", "--session", session_id, "and now?")
    assert (code, out) == (0, "#2: and now?\n"), err
    assert "session s_" not in err  # no new session

    code, out, _ = run(capsys, "sessions", "ls")
    assert code == 0
    assert session_id in out
    assert "what is 6*7?" in out


def test_chat_reads_messages_until_exit(
    key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert key
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n\n  second  \nexit\nnot sent\n"))
    code, out, err = run(capsys, "chat")
    assert code == 0, err
    assert out == "#1: hello\n#2: second\n"  # one session for the whole loop
    session_id = session_of(err)
    with Client(api_key=key) as client:
        messages = client.sessions_messages(session_id)
    assert [m.content for m in messages if m.role == "user"] == ["hello", "second"]

    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    code, out, _ = run(capsys, "chat", "--session", session_id, "-")
    assert (code, out) == (0, "#3: from stdin\n")


def test_sessions_rm_and_errors(
    key: str, scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(api_key=key) as client:
        session_id = client.sessions_create("doomed").id
    code, out, _ = run(capsys, "sessions", "ls")
    assert "doomed" in out
    assert run(capsys, "sessions", "rm", session_id)[:2] == (0, f"session {session_id} deleted\n")
    code, out, _ = run(capsys, "sessions", "ls")
    assert session_id not in out

    code, out, err = run(capsys, "sessions", "rm", session_id)
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert "Traceback" not in err
    code, _, err = run(capsys, "chat", "--session", "s_nope", "hi")
    assert code == 1
    assert "no session" in err

    scripted.script = broken
    code, out, err = run(capsys, "chat", "boom")
    assert (code, out) == (1, "")
    assert "error: the model request failed" in err
    assert "Traceback" not in err


# --- Python clients ----------------------------------------------------------------------------


def test_sync_client(chat_server: Live, key: str, scripted: Scripted) -> None:
    scripted.script = coding
    with Client(chat_server.url, key) as client:
        session = client.sessions_create()
        assert session.title == ""
        events = list(client.chat_stream(session.id, "what is 6*7?"))
        kinds = [type(e) for e in events]
        assert kinds[0] is ChatAgent
        assert kinds[-1] is ChatDone
        assert ChatToolCall in kinds
        assert ChatToolResult in kinds
        done = events[-1]
        assert isinstance(done, ChatDone)
        assert done.output == "The answer is 42."
        answer = [e.text for e in events if isinstance(e, ChatText) and e.agent == "coordinator"]
        assert "".join(answer) == "The answer is 42."

        scripted.script = echo
        reply = client.chat(session.id, "again")
        assert reply.content == "#2: again"
        assert reply.usage.requests == 1
        assert client.sessions_get(session.id).title == "what is 6*7?"
        assert [s.id for s in client.sessions_list()] == [session.id]
        messages = client.sessions_messages(session.id)
        assert [m.role for m in messages] == ["user", "assistant"] * 2
        assert messages[1].events[0]["event"] == "agent"

        scripted.script = broken
        with pytest.raises(AgentcellError) as failed:
            list(client.chat_stream(session.id, "boom"))
        assert failed.value.code == "model_error"
        with pytest.raises(AgentcellError) as failed_json:
            client.chat(session.id, "boom")
        assert failed_json.value.status_code == 502

        client.sessions_rm(session.id)
        with pytest.raises(NotFound):
            client.sessions_get(session.id)


async def test_async_client(chat_server: Live, key: str, scripted: Scripted) -> None:
    scripted.script = coding
    async with AsyncClient(chat_server.url, key) as client:
        session = await client.sessions_create("async")
        events: list[Any] = [e async for e in client.chat_stream(session.id, "6*7?")]
        assert isinstance(events[-1], ChatDone)
        assert events[-1].output == "The answer is 42."
        scripted.script = echo
        assert (await client.chat(session.id, "more")).content == "#2: more"
        assert len(await client.sessions_messages(session.id)) == 4
        assert (await client.sessions_get(session.id)).title == "async"
        assert [s.title for s in await client.sessions_list()] == ["async"]
        await client.sessions_rm(session.id)
        with pytest.raises(NotFound):
            await client.sessions_messages(session.id)


# --- audit of the agent's execs -----------------------------------------------------------------


def wiping(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """An injected instruction, obeyed: the coder wipes the workspace."""
    back = returned(messages)
    if role(info) == "coordinator":
        return text("Done.") if back else call("delegate_coder", task="clean up")
    return text("cleaned") if back else call("run_shell", command="rm -rf /workspace/*")


def test_the_agents_execs_are_audited(key: str, scripted: Scripted) -> None:
    scripted.script = wiping
    with Client(api_key=key) as client:
        session = client.sessions_create()
        assert client.chat(session.id, "tidy up").content == "Done."
        execs = [e for e in client.audit(100).events if e.action == "exec"]
    (wipe,) = execs
    assert (wipe.target, wipe.detail) == ("shell", "rm -rf /workspace/*")
    assert (wipe.started_by, wipe.status, wipe.exit_code, wipe.ok) == (
        f"agent:{session.id}",
        "done",
        0,
        True,
    )


# --- a chat that cannot start leaves nothing behind --------------------------------------------


def test_a_chat_without_a_model_leaves_no_session_and_logs_once(
    make_server: ServerFactory,
    make_settings: SettingsFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentcell")
    with make_server(make_settings(model="")) as live:
        for name in CLIENT_ENV:
            monkeypatch.delenv(name, raising=False)
        with live.admin() as admin:
            api_key = admin.users_add("nomodel").api_key
        monkeypatch.setenv("AGENTCELL_URL", live.url)
        monkeypatch.setenv("AGENTCELL_API_KEY", api_key)
        for _ in range(2):
            code, _, err = run(capsys, "chat", "hello")
            assert code == 1
            assert "no model is configured" in err
            assert "AGENTCELL_MODEL" in err
        with Client(api_key=api_key) as client:
            assert client.sessions_list() == []  # validated first: no empty session left
    said = [r for r in caplog.records if "no model is configured" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING]  # once, at start; not per request


def test_an_empty_message_is_refused_before_a_session_is_made(
    key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for empty in ("", "  \n"):
        code, _, err = run(capsys, "chat", empty)
        assert code == 1
        assert "the message is empty" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    code, _, err = run(capsys, "chat", "-")
    assert code == 1, err
    with Client(api_key=key) as client:
        assert client.sessions_list() == []
        session = client.sessions_create()
        with pytest.raises(AgentcellError, match="the message is empty"):
            client.chat(session.id, "   ")  # the API says so too, and keeps nothing
        assert client.sessions_messages(session.id) == []


def test_model_text_on_a_terminal_is_made_visible(key: str, scripted: Scripted) -> None:
    assert key
    hostile = "\x1b]52;c;cHduZWQ=\x07\x1b[2J"
    scripted.script = lambda _messages, _info: text(hostile + "answer")
    status, shown = on_a_terminal("chat", "hi")
    assert status == 0, shown
    assert "\x1b]52" not in shown
    assert "\x1b[2J" not in shown
    assert "^[]52;c;cHduZWQ=^G^[[2Janswer" in shown
