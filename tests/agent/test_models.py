"""build_model: the provider from settings, and clear errors when they do not name one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel

from agentcell.agent.models import TextToolCallModel, base_url_of, build_model
from agentcell.config import Settings
from agentcell.errors import InvalidSetting, ModelNotConfigured


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_no_model_names_the_settings_to_set(tmp_path: Path) -> None:
    with pytest.raises(ModelNotConfigured) as caught:
        build_model(settings(tmp_path))
    error = caught.value
    assert error.status_code == 503
    assert error.code == "model_not_configured"
    for name in ("AGENTCELL_MODEL", "AGENTCELL_MODEL_BASE_URL", "AGENTCELL_MODEL_API_KEY"):
        assert name in error.hint
    assert "openai:qwen2.5" in error.hint  # an example


@pytest.mark.parametrize("model", ["gpt-4.1", "openai:", "mistral:large", "ollama:qwen2.5"])
def test_a_model_without_a_known_provider_is_refused(tmp_path: Path, model: str) -> None:
    with pytest.raises(InvalidSetting) as caught:
        build_model(settings(tmp_path, model=model, model_api_key="k"))
    assert "AGENTCELL_MODEL" in caught.value.message
    assert "openai:" in caught.value.hint


def test_openai_needs_a_key_unless_a_local_server_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotConfigured, match="AGENTCELL_MODEL_API_KEY"):
        build_model(settings(tmp_path, model="openai:gpt-4.1"))
    local = build_model(
        settings(tmp_path, model="openai:qwen2.5", model_base_url="http://127.0.0.1:11434/v1")
    )
    assert isinstance(local, TextToolCallModel)
    assert isinstance(local.wrapped, OpenAIChatModel)
    assert local.model_name == "qwen2.5"
    assert base_url_of(local).startswith("http://127.0.0.1:11434/v1")


def test_anthropic(tmp_path: Path) -> None:
    with pytest.raises(ModelNotConfigured):
        build_model(settings(tmp_path, model="anthropic:claude-sonnet-4-5"))
    model = build_model(
        settings(tmp_path, model="anthropic:claude-sonnet-4-5", model_api_key="sk-ant-test")
    )
    assert isinstance(model, TextToolCallModel)
    assert isinstance(model.wrapped, AnthropicModel)


def test_the_key_is_not_put_in_the_environment(tmp_path: Path) -> None:
    build_model(settings(tmp_path, model="openai:gpt-4.1", model_api_key="sk-test-SECRET123"))
    assert not any("SECRET123" in value for value in os.environ.values())
