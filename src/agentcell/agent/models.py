"""The agent's model, chosen by settings: OpenAI, any OpenAI-compatible server (Ollama, vLLM,
llama.cpp, LM Studio), or Anthropic; wrapped so that tool calls written as text work too.

The API key goes to the provider's HTTP client in this process and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from agentcell.agent.toolcalls import may_be_tool_call, rewrite_response
from agentcell.config import Settings
from agentcell.errors import InvalidSetting, ModelNotConfigured

PROVIDERS = ("openai", "anthropic")
LOCAL_KEY = "not-needed"  # local OpenAI-compatible servers want some key, and check none


def build_model(settings: Settings) -> Model:
    """The model named by ``AGENTCELL_MODEL`` (``provider:name``), ready for the agents."""
    spec = settings.model.strip()
    if not spec:
        raise ModelNotConfigured("no model is configured for the agent")
    provider, sep, name = spec.partition(":")
    if not sep or not name:
        raise InvalidSetting(
            f"AGENTCELL_MODEL={spec!r} is not provider:name",
            hint="e.g. openai:gpt-4.1, anthropic:claude-sonnet-4-5, or openai:qwen2.5 "
            "with AGENTCELL_MODEL_BASE_URL=http://127.0.0.1:11434/v1",
        )
    key = settings.model_api_key.get_secret_value()
    base_url = settings.model_base_url.strip() or None
    if provider == "openai":
        model = _openai(name, key, base_url)
    elif provider == "anthropic":
        model = _anthropic(name, key, base_url)
    else:
        raise InvalidSetting(
            f"unknown model provider {provider!r} in AGENTCELL_MODEL={spec!r}",
            hint=f"use one of {', '.join(PROVIDERS)}: openai:<name> also serves any "
            "OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio) given "
            "AGENTCELL_MODEL_BASE_URL",
        )
    return TextToolCallModel(model)


def _openai(name: str, key: str, base_url: str | None) -> Model:
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    if not key and base_url is None:
        raise ModelNotConfigured(
            f"AGENTCELL_MODEL=openai:{name} needs AGENTCELL_MODEL_API_KEY",
            hint="set AGENTCELL_MODEL_API_KEY, or AGENTCELL_MODEL_BASE_URL for a local "
            "OpenAI-compatible server (then any key will do)",
        )
    return OpenAIChatModel(
        name, provider=OpenAIProvider(base_url=base_url, api_key=key or LOCAL_KEY)
    )


def _anthropic(name: str, key: str, base_url: str | None) -> Model:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    if not key:
        raise ModelNotConfigured(
            f"AGENTCELL_MODEL=anthropic:{name} needs AGENTCELL_MODEL_API_KEY",
            hint="set AGENTCELL_MODEL_API_KEY to an Anthropic API key",
        )
    return AnthropicModel(name, provider=AnthropicProvider(api_key=key, base_url=base_url))


def base_url_of(model: Model) -> str:
    """Where the model's requests go, for messages (never with credentials)."""
    try:
        url = model.base_url
    except (AttributeError, NotImplementedError):
        return ""
    return url or ""


class TextToolCallModel(WrapperModel):
    """A model whose answers may hold tool calls written as text (fenced JSON, ``<tool_call>``
    tags, bare JSON): those naming a known tool become real tool calls. Streamed answers that
    might be such a call are held back until the response ends, then either rewritten or let
    through; everything else streams as it comes."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        response = await self.wrapped.request(messages, model_settings, model_request_parameters)
        return rewrite_response(response, model_request_parameters.tool_defs.keys())

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        async with self.wrapped.request_stream(
            messages, model_settings, model_request_parameters, run_context
        ) as inner:
            yield TextToolCallStream(
                model_request_parameters=inner.model_request_parameters,
                inner=inner,
                tools=frozenset(model_request_parameters.tool_defs),
            )


@dataclass
class TextToolCallStream(StreamedResponse):
    """Passes the inner stream's part events through, holding back text that may be a call."""

    inner: StreamedResponse
    tools: frozenset[str]
    _done: bool = field(default=False, init=False)

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        held: list[PartStartEvent | PartDeltaEvent] = []
        texts: dict[int, str] = {}
        streaming: set[int] = set()  # text parts known not to be calls
        holding = False  # a text part looks like a call: hold everything to the end
        async for event in self.inner:
            if not isinstance(event, PartStartEvent | PartDeltaEvent):
                continue  # part ends and final-result events are made again by our __aiter__
            if not holding:
                verdict = self._verdict(event, texts, streaming)
                holding = verdict is True
                if verdict is False:
                    for ready in [*held, event]:
                        self._parts_manager.apply_event(ready)
                        yield ready
                    held.clear()
                    continue
            held.append(event)
        self._done = True
        response = self.inner.get()
        if not holding or rewrite_response(response, self.tools) is response:
            for ready in held:
                self._parts_manager.apply_event(ready)
                yield ready

    def _verdict(
        self, event: PartStartEvent | PartDeltaEvent, texts: dict[int, str], streaming: set[int]
    ) -> bool | None:
        """True: may be a call, hold it; False: let it through; None: cannot tell yet."""
        if not self.tools or event.index in streaming:
            return False
        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
            texts[event.index] = event.part.content
        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
            texts[event.index] = texts.get(event.index, "") + event.delta.content_delta
        else:
            return False
        verdict = may_be_tool_call(texts[event.index])
        if verdict is False:
            streaming.add(event.index)
        return verdict

    def get(self) -> ModelResponse:
        response = self.inner.get()
        return rewrite_response(response, self.tools) if self._done else response

    async def close_stream(self) -> None:
        await self.inner.cancel()

    @property
    def usage(self) -> RequestUsage:
        return self.inner.usage

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def provider_name(self) -> str | None:
        return self.inner.provider_name

    @property
    def provider_url(self) -> str | None:
        return self.inner.provider_url

    @property
    def timestamp(self) -> datetime:
        return self.inner.timestamp
