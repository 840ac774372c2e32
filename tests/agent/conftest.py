"""Agent fixtures: scripted models (FunctionModel) that play the coordinator, coder and browser,
real cells, and no real model requests (pydantic-ai's own test habit)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import docker
import pytest
from pydantic_ai import models
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentcell.agent.events import AgentEvent
from agentcell.agent.runner import run_turn
from agentcell.sandbox.docker.images import ensure_image
from agentcell.sandbox.manager import CellManager
from tests.scripted import Scripted, call, prompts, returned, role, text

Script = Callable[[list[ModelMessage], AgentInfo], ModelResponse]


@pytest.fixture(autouse=True)
def no_model_requests() -> Iterator[None]:
    """Only scripted models here; the one test with a (local) HTTP model allows it itself."""
    with models.override_allow_model_requests(False):
        yield


def scripted(script: Script) -> FunctionModel:
    """A FunctionModel that answers with ``script``'s response, streamed in small pieces."""
    return Scripted(script).model()


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    """The tool results the model got in the last request."""
    assert isinstance(messages[-1], ModelRequest)
    return returned(messages)


def prompt_of(messages: list[ModelMessage]) -> str:
    return (prompts(messages) or [""])[-1]


@dataclass
class Turn:
    events: list[AgentEvent]

    def names(self) -> list[str]:
        """Each event as a short string: 'agent:coder:start', 'tool_call:write_file', ..."""
        out = []
        for e in self.events:
            p = e.payload()
            if e.event == "agent":
                out.append(f"agent:{p['agent']}:{p['action']}")
            elif e.event in ("tool_call", "tool_result"):
                out.append(f"{e.event}:{p['tool']}")
            else:
                out.append(e.event)
        return out


async def collect(stream: AsyncIterator[AgentEvent]) -> Turn:
    return Turn([event async for event in stream])


@pytest.fixture(scope="session")
def full_image(docker_client: docker.DockerClient) -> str:
    """The `full` sandbox image (Chromium, Playwright), built from this checkout when missing."""
    return ensure_image(docker_client, "full", lambda _event: None)


def plan(agent: str, *steps: ModelResponse, seen: list[ToolReturnPart] | None = None) -> Script:
    """The coordinator delegates to ``agent``, which answers with ``steps`` one after another
    (whatever they return), then reports; what its tools returned is appended to ``seen``."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        results = returns(messages)
        if role(info) == "coordinator":
            if not results:
                return call(f"delegate_{agent}", task="do the steps")
            return text(str(results[0].content))
        if seen is not None:
            seen.extend(results)
        done = sum(isinstance(m, ModelResponse) for m in messages)
        return steps[done] if done < len(steps) else text("finished")

    return script


async def run_plan(
    manager: CellManager, agent: str, *steps: ModelResponse, session_id: str = "t"
) -> tuple[Turn, list[ToolReturnPart]]:
    """Run ``plan`` in a turn on alice's cell: the events, and the tool results the model saw."""
    seen: list[ToolReturnPart] = []
    cell = await manager.ensure("alice")
    turn = await collect(
        run_turn(
            settings=manager.settings,
            cell=cell,
            session_id=session_id,
            prompt="go",
            history=[],
            model=scripted(plan(agent, *steps, seen=seen)),
        )
    )
    return turn, seen
