"""One turn of a chat session: the coordinator (and the agents it delegates to) run against the
user's cell, and the turn is reported as one ordered stream of events that ends with exactly one
``Done`` or ``Failed``.

Closing the stream (``aclose()``, or cancelling the task that reads it) stops the turn: the agent
run is cancelled, which hangs up on any exec in flight, and the session's python contexts are
interrupted, so nothing keeps running in the cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from pydantic import ValidationError
from pydantic_ai import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from pydantic_ai.models import Model
from pydantic_ai.tool_manager import ToolManager
from pydantic_ai.usage import RunUsage

from agentcell.agent.agents import COORDINATOR, limits_of, run_agent
from agentcell.agent.events import AgentEvent, Done, Failed, Usage
from agentcell.agent.models import base_url_of, build_model
from agentcell.agent.tools import AgentDeps
from agentcell.config import Settings
from agentcell.errors import (
    AgentcellError,
    AgentLimitReached,
    ModelFailed,
    ModelUnreachable,
)
from agentcell.sandbox.audit import started_by
from agentcell.sandbox.service import CellHandle

log = logging.getLogger(__name__)

INTERRUPT_TIMEOUT_S = 5.0
LIMITS = {  # pydantic-ai's name of a limit -> what it counts, and our setting
    "request_limit": ("model requests", "AGENTCELL_AGENT_MAX_REQUESTS"),
    "tool_calls_limit": ("tool calls", "AGENTCELL_AGENT_MAX_TOOL_CALLS"),
    "total_tokens_limit": ("tokens", "AGENTCELL_AGENT_MAX_TOKENS"),
}


async def run_turn(
    *,
    settings: Settings,
    cell: CellHandle,
    session_id: str,
    prompt: str,
    history: Sequence[bytes],
    model: Model | None = None,
) -> AsyncIterator[AgentEvent]:
    """Run one turn. ``history`` holds the ``messages_json`` of the session's earlier turns
    (``Done.messages_json``), oldest first; ``model`` replaces the configured one (tests)."""
    try:
        model = model or build_model(settings)
        messages = load_history(history)
    except AgentcellError as exc:
        yield failed(exc, settings, None)
        return
    queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
    deps = AgentDeps(cell, settings, session_id, queue.put_nowait, model, limits_of(settings))
    task = asyncio.create_task(_drive(deps, prompt, messages), name=f"turn s-{session_id}")
    ended = False
    try:
        while not ended:
            event = await queue.get()
            ended = isinstance(event, Done | Failed)
            yield event
    finally:
        if not ended:
            await _stop(task, deps)


async def _drive(deps: AgentDeps, prompt: str, history: list[ModelMessage]) -> None:
    """Run the coordinator; its events, then Done or Failed, go to ``deps.emit``."""
    started_by.set(f"agent:{deps.session_id}")  # this task's execs are audited as the agent's
    try:
        with ToolManager.parallel_execution_mode("sequential"):  # one cell: one thing at a time
            result = await run_agent(COORDINATOR, deps, prompt, message_history=history)
    except Exception as exc:  # every failure ends the turn with one Failed event
        deps.emit(failed(exc, deps.settings, deps.model))
        return
    deps.emit(Done(result.output, usage_of(result.usage), result.new_messages_json()))


async def _stop(task: asyncio.Task[None], deps: AgentDeps) -> None:
    """Cancel the turn, then interrupt whatever still runs in the session's contexts."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    for context in (deps.python_context, deps.browser_context):
        try:
            async with asyncio.timeout(INTERRUPT_TIMEOUT_S):
                await deps.cell.interrupt(context)
        except (AgentcellError, TimeoutError) as exc:
            log.warning("cannot interrupt %s in the cell of %r: %s", context, deps.cell.owner, exc)


def load_history(blobs: Sequence[bytes]) -> list[ModelMessage]:
    """The model messages of earlier turns (each blob is one turn's ``messages_json``)."""
    messages: list[ModelMessage] = []
    for number, blob in enumerate(blobs, 1):
        try:
            messages += ModelMessagesTypeAdapter.validate_json(blob)
        except ValidationError as exc:
            raise AgentcellError(
                f"turn {number} of this session's history cannot be read: "
                f"{exc.error_count()} errors, first: {exc.errors()[0]['msg']}",
                hint="start a new session",
            ) from exc
    return messages


def usage_of(usage: RunUsage) -> Usage:
    return Usage(usage.requests, usage.input_tokens, usage.output_tokens, usage.tool_calls)


def failed(exc: BaseException, settings: Settings, model: Model | None) -> Failed:
    """The Failed event for an error, with the model key scrubbed from what it says."""
    error = as_agentcell_error(exc, model)
    secret = settings.model_api_key.get_secret_value()
    message, hint = error.message, error.hint
    if secret:
        message, hint = message.replace(secret, "[key]"), hint.replace(secret, "[key]")
    return Failed(error.code, message, hint)


def as_agentcell_error(exc: BaseException, model: Model | None) -> AgentcellError:
    if isinstance(exc, AgentcellError):
        return exc
    where = base_url_of(model) if model is not None else ""
    if isinstance(exc, UsageLimitExceeded):
        return _limit_error(exc.message)
    if isinstance(exc, ModelConnectionError):
        return ModelUnreachable(
            f"cannot reach the model{f' at {where}' if where else ''}: {exc.message}",
            hint=f"is the model server running and reachable from this host at {where or '?'}? "
            "Check AGENTCELL_MODEL_BASE_URL",
        )
    if isinstance(exc, ModelAuthenticationError):
        return ModelFailed(
            f"the model provider refused the credentials: {exc.message}",
            hint="check AGENTCELL_MODEL_API_KEY",
        )
    if isinstance(exc, ModelAPIError):
        return ModelFailed(f"the model request failed: {exc.message}", hint="retry later")
    if isinstance(exc, UnexpectedModelBehavior):
        return ModelFailed(
            f"the model did not follow the protocol: {exc.message}",
            hint="retry; a more capable model (or one with tool calling) may be needed",
        )
    log.error("agent turn failed", exc_info=exc)
    return AgentcellError(f"the agent failed: {type(exc).__name__}: {exc}")


def _limit_error(message: str) -> AgentLimitReached:
    for name, (what, setting) in LIMITS.items():
        if name in message:
            return AgentLimitReached(
                f"this turn reached its limit of {what} ({message})",
                hint=f"ask for less in one turn, or raise {setting} (0 = no limit)",
            )
    return AgentLimitReached(f"this turn reached a usage limit ({message})")
