"""Development or production (exposure.py): signatures off only when every way in is loopback."""

from __future__ import annotations

import pytest

from voicebridge.edge.config import EdgeSettings
from voicebridge.runtime.config import ConfigError, Env

TOKEN = "0123456789abcdef0123456789abcdef"


def settings(**env: str) -> EdgeSettings:
    return EdgeSettings.from_env(Env(env))


@pytest.mark.parametrize(
    ("env", "validates"),
    [
        ({}, False),  # nothing configured: local development on 127.0.0.1
        ({"EDGE_HOST": "0.0.0.0", "EDGE_PUBLISHED_ON": "127.0.0.1:8000"}, False),  # compose's default
        ({"EDGE_HOST": "::1", "PUBLIC_BASE_URL": "http://localhost:8000"}, False),
        ({"TWILIO_AUTH_TOKEN": TOKEN}, True),  # a token: signatures on by default
        ({"TWILIO_AUTH_TOKEN": TOKEN, "EDGE_HOST": "0.0.0.0", "PUBLIC_BASE_URL": "https://v.example"}, True),
        ({"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_VALIDATE_SIGNATURES": "false"}, False),  # on loopback
    ],
    ids=["bare", "compose-dev", "ipv6-loopback", "token", "production", "token-off-loopback"],
)
def test_allowed_combinations(env: dict[str, str], validates: bool) -> None:
    assert settings(**env).validate_signatures is validates


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"EDGE_HOST": "0.0.0.0"}, "listening on 0.0.0.0:8000"),
        ({"PUBLIC_BASE_URL": "https://voice.example.com"}, "PUBLIC_BASE_URL=https://voice.example.com"),
        ({"EDGE_HOST": "0.0.0.0", "EDGE_PUBLISHED_ON": "0.0.0.0:8000"}, "listening on 0.0.0.0:8000"),
        ({"EDGE_HOST": "0.0.0.0", "EDGE_PUBLISHED_ON": "8000"}, "listening on 8000"),  # every interface
        ({"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_VALIDATE_SIGNATURES": "0", "EDGE_HOST": "10.0.0.5"}, "10.0.0"),
        ({"TWILIO_VALIDATE_SIGNATURES": "true"}, "TWILIO_AUTH_TOKEN is not set"),
    ],
    ids=["bind-all", "public-url", "published-all", "published-port", "explicit-off-public", "on-no-token"],
)
def test_signatures_off_on_a_public_address_refuses_with_what_to_set(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(**env)
    message = str(refused.value)
    assert says in message
    assert "TWILIO_AUTH_TOKEN" in message
    assert "\n" not in message
