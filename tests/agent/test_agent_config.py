"""The agent service's settings: the default backend, and contradictions refused at start-up."""

from __future__ import annotations

import pytest

from voicebridge.agent.config import AgentSettings
from voicebridge.runtime.config import ConfigError, Env


def test_without_elevenlabs_credentials_the_parrot_is_the_default() -> None:
    assert AgentSettings.from_env(Env({})).backend == "parrot"


def test_an_elevenlabs_agent_id_makes_elevenlabs_the_default() -> None:
    settings = AgentSettings.from_env(Env({"ELEVENLABS_AGENT_ID": "agent_1"}))
    assert settings.backend == "elevenlabs"
    assert settings.elevenlabs is not None
    assert settings.elevenlabs.requires_auth is False  # no key: a public agent


def test_an_api_key_means_a_signed_url_per_call() -> None:
    settings = AgentSettings.from_env(Env({"ELEVENLABS_AGENT_ID": "a", "ELEVENLABS_API_KEY": "k" * 20}))
    assert settings.elevenlabs is not None
    assert settings.elevenlabs.requires_auth is True


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ELEVENLABS_AGENT_ID": "a", "ELEVENLABS_HANDSHAKE_TIMEOUT_S": "12"}, "HANDSHAKE_TIMEOUT"),
        ({"ELEVENLABS_AGENT_ID": "a", "ELEVENLABS_REQUIRES_AUTH": "true"}, "API key"),
        ({"AGENT_BACKEND": "elevenlabs"}, "ELEVENLABS_AGENT_ID"),
        ({"AGENT_BACKEND": "openai"}, "AGENT_BACKEND"),
    ],
)
def test_contradictory_settings_are_refused_with_the_variable_named(
    env: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        AgentSettings.from_env(Env(env))
