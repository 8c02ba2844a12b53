"""Edge unit-test helpers: settings from an env mapping, Twilio-style signatures, metric reads."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator

from voicebridge.edge.config import EdgeSettings
from voicebridge.runtime.config import Env

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
ACCOUNT_SID = "AC" + "a" * 32
API_TOKEN = "api-token-0123456789abcdef"
PUBLIC = "https://voice.example.com"
FROM_NUMBER = "+15550009999"
SIGNER = RequestValidator(AUTH_TOKEN)
ClientFactory = Callable[..., httpx.AsyncClient]  # the edge_client fixture: env overrides -> client


def make_settings(**env: str) -> EdgeSettings:
    return EdgeSettings.from_env(
        Env(
            {
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "PUBLIC_BASE_URL": PUBLIC,
                "TWILIO_FROM_NUMBER": FROM_NUMBER,
                "EDGE_API_TOKEN": API_TOKEN,
                "EDGE_STREAM_TOKEN_SECRET": "stream-secret-0123456789abcdef",
                **env,
            }
        )
    )


def signed(path: str, form: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    """Headers Twilio would send for a form POST to PUBLIC + path."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + path, form)}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
