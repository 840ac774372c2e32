"""Whole turns, driven by scripted models, against real cells."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo

from agentcell.agent.events import AgentStep, Done, Failed, Text, ToolCall, ToolResult
from agentcell.agent.runner import run_turn
from agentcell.sandbox.cell import Cell
from agentcell.sandbox.manager import CellManager
from tests.agent.conftest import call, collect, prompt_of, returns, role, scripted, text
from tests.conftest import ManagerFactory, workspace_dir
from tests.waiting import until

pytestmark = pytest.mark.docker

FIB = "a, b = 0, 1\nfor _ in range(10):\n    print(a)\n    a, b = b, a + b\n"
FIB_OUT = "0\n1\n1\n2\n3\n5\n8\n13\n21\n34"


def fib_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    results = returns(messages) if isinstance(messages[-1], ModelRequest) else []
    if role(info) == "coordinator":
        if not results:
            return call("delegate_coder", task="write fib.py printing 10 Fibonacci numbers, run it")
        return text(f"Done. fib.py prints:\n{results[0].content}")
    if not results:
        return call("write_file", path="fib.py", content=FIB)
    if results[0].tool_name == "write_file":
        return call("run_shell", command="python3 fib.py")
    return text(str(results[0].content))


async def test_coordinator_delegates_to_coder_who_writes_and_runs_fib(
    manager: CellManager,
) -> None:
    cell = await manager.ensure("alice")
    turn = await collect(
        run_turn(
            settings=manager.settings,
            cell=cell,
            session_id="s1",
            prompt="write fib.py and run it",
            history=[],
            model=scripted(fib_script),
        )
    )
    names = [n for n in turn.names() if n != "text"]
    assert names == [
        "agent:coder:start",
        "tool_call:write_file",
        "tool_result:write_file",
        "tool_call:run_shell",
        "tool_result:run_shell",
        "agent:coder:end",
        "done",
    ], turn.names()
    ev = turn.events
    run_result = next(e for e in ev if isinstance(e, ToolResult) and e.tool == "run_shell")
    assert run_result.content == FIB_OUT
    assert run_result.ok
    call_ev = next(e for e in ev if isinstance(e, ToolCall) and e.tool == "write_file")
    assert call_ev.agent == "coder"
    assert call_ev.args == {"path": "fib.py", "content": FIB}
    assert (
        call_ev.call_id
        == next(e for e in ev if isinstance(e, ToolResult) and e.tool == "write_file").call_id
    )
    end = next(e for e in ev if isinstance(e, AgentStep) and e.action == "end")
    assert end.ok
    last_text_index = max(i for i, e in enumerate(ev) if isinstance(e, Text))
    assert ev.index(end) < last_text_index < len(ev) - 1
    coordinator_text = "".join(
        e.text for e in ev if isinstance(e, Text) and e.agent == "coordinator"
    )
    assert coordinator_text == f"Done. fib.py prints:\n{FIB_OUT}"
    done = ev[-1]
    assert isinstance(done, Done)
    assert done.output == coordinator_text
    assert done.usage.requests == 5  # coordinator 2 + coder 3, one shared usage
    assert done.usage.tool_calls == 3
    assert (workspace_dir(manager, cell) / "fib.py").read_text() == FIB


def retry_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    results = returns(messages)
    if role(info) == "coordinator":
        if not results:
            return call("delegate_coder", task="compute 6 * 7")
        return text(str(results[0].content))
    if not results:
        return call("run_python", code="x = 6 * 7\nprint(x / 0)")
    if results[0].outcome == "retried":
        assert "ZeroDivisionError" in str(results[0].content)
        return call("run_python", code="print(x)")  # the context kept x
    return text(f"the answer is {results[0].content}")


async def test_a_python_error_is_retried_and_the_coder_recovers(manager: CellManager) -> None:
    cell = await manager.ensure("alice")
    turn = await collect(
        run_turn(
            settings=manager.settings,
            cell=cell,
            session_id="s2",
            prompt="what is 6 * 7?",
            history=[],
            model=scripted(retry_script),
        )
    )
    results = [e for e in turn.events if isinstance(e, ToolResult)]
    assert [(r.tool, r.ok) for r in results] == [("run_python", False), ("run_python", True)]
    assert "ZeroDivisionError: division by zero" in results[0].content
    assert results[1].content == "42"
    done = turn.events[-1]
    assert isinstance(done, Done), turn.events
    assert done.output == "the answer is 42"


def remembering_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    assert role(info) == "coordinator"
    prompts = [
        p.content
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, UserPromptPart)
    ]
    answers = [
        p.content
        for m in messages
        if isinstance(m, ModelResponse)
        for p in m.parts
        if isinstance(p, TextPart)
    ]
    if prompt_of(messages) == "my name is Ada":
        return text("Nice to meet you, Ada.")
    assert prompts == ["my name is Ada", "what is my name?"]
    assert answers == ["Nice to meet you, Ada."]
    return text("Your name is Ada.")


async def test_a_second_turn_sees_the_first(manager: CellManager) -> None:
    cell = await manager.ensure("alice")
    model = scripted(remembering_script)
    first = await collect(
        run_turn(
            settings=manager.settings,
            cell=cell,
            session_id="s3",
            prompt="my name is Ada",
            history=[],
            model=model,
        )
    )
    done = first.events[-1]
    assert isinstance(done, Done)
    second = await collect(
        run_turn(
            settings=manager.settings,
            cell=cell,
            session_id="s3",
            prompt="what is my name?",
            history=[done.messages_json],
            model=model,
        )
    )
    assert isinstance(second.events[-1], Done), second.events
    assert second.events[-1].output == "Your name is Ada."


def limit_script(_messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if role(info) == "coordinator":
        return call("delegate_coder", task="loop forever")
    return call("run_python", code="print(1)")


async def test_a_turn_ends_at_its_request_limit(make_manager: ManagerFactory) -> None:
    async with make_manager(agent_max_requests=4) as manager:
        cell = await manager.ensure("alice")
        turn = await collect(
            run_turn(
                settings=manager.settings,
                cell=cell,
                session_id="s4",
                prompt="go",
                history=[],
                model=scripted(limit_script),
            )
        )
    failed = turn.events[-1]
    assert isinstance(failed, Failed), turn.events
    assert failed.code == "agent_limit"
    assert "model requests" in failed.message
    assert "AGENTCELL_AGENT_MAX_REQUESTS" in failed.hint
    assert sum(isinstance(e, Failed | Done) for e in turn.events) == 1
    end = [e for e in turn.events if isinstance(e, AgentStep) and e.action == "end"]
    assert [e.ok for e in end] == [False]


async def test_no_model_configured_fails_with_the_settings_to_set(manager: CellManager) -> None:
    cell = await manager.ensure("alice")
    turn = await collect(
        run_turn(settings=manager.settings, cell=cell, session_id="s5", prompt="hi", history=[])
    )
    [failed] = turn.events
    assert isinstance(failed, Failed)
    assert failed.code == "model_not_configured"
    for name in ("AGENTCELL_MODEL", "AGENTCELL_MODEL_BASE_URL", "AGENTCELL_MODEL_API_KEY"):
        assert name in failed.hint


async def test_unreadable_history_fails_clearly(manager: CellManager) -> None:
    cell = await manager.ensure("alice")
    turn = await collect(
        run_turn(
            settings=manager.settings,
            cell=cell,
            session_id="s6",
            prompt="hi",
            history=[b'[{"kind": "nonsense"}]'],
            model=scripted(remembering_script),
        )
    )
    [failed] = turn.events
    assert isinstance(failed, Failed)
    assert "history" in failed.message


def sleepy_script(_messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if role(info) == "coordinator":
        return call("delegate_coder", task="sleep")
    return call(
        "run_python",
        code="import time\nstate = 'sleeping'\nopen('/tmp/sleeping', 'w').close()\n"
        "try:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    state = 'interrupted'\n    raise\n",
    )


async def _sleeping(cell: Cell) -> bool:
    """sleepy_script's code has reached time.sleep (asked from a shell, beside the context)."""
    probe = await cell.exec("test -e /tmp/sleeping", language="shell", timeout_s=10)
    return probe.exit_code == 0


async def test_closing_the_stream_interrupts_the_running_code(manager: CellManager) -> None:
    cell = await manager.ensure("alice")
    stream = run_turn(
        settings=manager.settings,
        cell=cell,
        session_id="s7",
        prompt="sleep",
        history=[],
        model=scripted(sleepy_script),
    )
    async for event in stream:
        if isinstance(event, ToolCall) and event.tool == "run_python":
            break
    await until("the code reaches time.sleep", lambda: _sleeping(cell))
    t0 = time.monotonic()
    await stream.aclose()  # type: ignore[attr-defined]
    result = await cell.exec("print(state)", context="s-s7", timeout_s=10)
    assert time.monotonic() - t0 < 5
    assert result.stdout == "interrupted\n"
    assert not result.context_reset


async def test_cancelling_the_consumer_task_interrupts_too(manager: CellManager) -> None:
    cell = await manager.ensure("alice")
    started = asyncio.Event()

    async def consume() -> None:
        async for event in run_turn(
            settings=manager.settings,
            cell=cell,
            session_id="s8",
            prompt="sleep",
            history=[],
            model=scripted(sleepy_script),
        ):
            if isinstance(event, ToolCall):
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    await until("the code reaches time.sleep", lambda: _sleeping(cell))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = await cell.exec("print(state)", context="s-s8", timeout_s=10)
    assert result.stdout == "interrupted\n"


async def test_a_cell_that_dies_ends_the_turn_as_such(
    manager: CellManager, docker_client: docker.DockerClient
) -> None:
    cell = await manager.ensure("alice")

    def script(_messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if role(info) == "coordinator":
            return call("delegate_coder", task="run something")
        docker_client.containers.get(cell.container_id).remove(force=True)  # gone under the agent
        return call("run_shell", command="echo hi")

    turn = await collect(
        run_turn(
            settings=manager.settings,
            cell=cell,
            session_id="s9",
            prompt="go",
            history=[],
            model=scripted(script),
        )
    )
    failed = turn.events[-1]
    assert isinstance(failed, Failed), turn.events
    assert failed.code == "cell_died"
    assert (await cell.exec("print(1)")).stdout == "1\n"  # and it was recreated
