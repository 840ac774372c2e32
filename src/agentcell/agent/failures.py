"""What ends a turn early, as the one ``Failed`` event the turn ends with: our errors as they
are, pydantic-ai's and the model provider's translated, the model key never in what it says."""

from __future__ import annotations

import logging

from pydantic_ai import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.models import Model

from agentcell.agent.events import Failed
from agentcell.agent.models import base_url_of
from agentcell.config import Settings
from agentcell.errors import AgentcellError, AgentLimitReached, ModelFailed, ModelUnreachable

log = logging.getLogger(__name__)

LIMITS = {  # pydantic-ai's name of a limit -> what it counts, and our setting
    "request_limit": ("model requests", "AGENTCELL_AGENT_MAX_REQUESTS"),
    "tool_calls_limit": ("tool calls", "AGENTCELL_AGENT_MAX_TOOL_CALLS"),
    "total_tokens_limit": ("tokens", "AGENTCELL_AGENT_MAX_TOKENS"),
}


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
