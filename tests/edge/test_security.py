"""The Media Streams socket's checks: the upgrade's signature and the per-call token in `start`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from edge_helpers import SIGNER, make_settings
from starlette.datastructures import Headers
from twilio.request_validator import RequestValidator

from voicebridge.edge.config import EdgeSettings
from voicebridge.edge.security import EdgeSecurity
from voicebridge.edge.twilio import media_streams as ms
from voicebridge.runtime.config import ConfigError, Env

CALL = "CA" + "3" * 32
WSS = "wss://voice.example.com/twilio/media"


def _ws(signature: str | None) -> SimpleNamespace:
    """An upgrade request's headers as Starlette gives them (case-insensitive; Twilio's casing)."""
    return SimpleNamespace(headers=Headers({"X-Twilio-Signature": signature} if signature else {}))


def _start(params: dict[str, str], call_sid: str = CALL) -> ms.Start:
    return ms.Start(
        sequence_number=1,
        account_sid="AC1",
        call_sid=call_sid,
        stream_sid="MZ1",
        tracks=("inbound",),
        media_format=ms.MediaFormat("audio/x-mulaw", 8000, 1),
        custom_parameters=params,
    )


@pytest.mark.parametrize(
    ("signature", "ok"),
    [
        (SIGNER.compute_signature(WSS, {}), True),
        (None, False),
        (SIGNER.compute_signature("ws://127.0.0.1:8000/twilio/media", {}), False),  # the request's own URL
        (SIGNER.compute_signature("https://voice.example.com/twilio/media", {}), False),
        (SIGNER.compute_signature(WSS + "?a=1", {}), False),
        (RequestValidator("f" * 32).compute_signature(WSS, {}), False),
    ],
    ids=["valid", "missing", "request_url", "https_scheme", "query", "wrong_token"],
)
def test_upgrade_signature_is_checked_against_the_public_wss_url(signature: str | None, ok: bool) -> None:
    assert EdgeSecurity(make_settings()).verify_upgrade(_ws(signature)) is ok


def test_inbound_token_is_bound_to_its_call_and_single_use() -> None:
    security = EdgeSecurity(make_settings())
    token = security.mint_inbound(CALL)
    assert security.verify_start(_start({"vb_token": token}, "CA" + "4" * 32)) is not None
    assert security.verify_start(_start({})) == "missing"
    assert security.verify_start(_start({"vb_token": token})) is None
    assert security.verify_start(_start({"vb_token": token})) == "already used"


def test_outbound_token_is_bound_to_the_numbers_in_the_same_twiml() -> None:
    security = EdgeSecurity(make_settings())
    token = security.mint_outbound("+15550009999", "+15551230000")
    params = {"vb_token": token, "vb_direction": "outbound", "vb_from": "+15550009999"}
    assert security.verify_start(_start({**params, "vb_to": "+15557777777"})) is not None
    assert (
        security.verify_start(_start({**params, "vb_to": "+15551230000", "vb_direction": "inbound"}))
        is not None
    )
    assert security.verify_start(_start({**params, "vb_to": "+15551230000"})) is None


def test_tokens_from_another_secret_are_refused() -> None:
    other = EdgeSecurity(make_settings(EDGE_STREAM_TOKEN_SECRET="another-secret-0123456789"))
    assert (
        EdgeSecurity(make_settings()).verify_start(_start({"vb_token": other.mint_inbound(CALL)})) is not None
    )


def test_with_validation_explicitly_off_everything_passes() -> None:
    # Off is allowed on loopback only (exposure.py; tests/edge/test_exposure.py).
    security = EdgeSecurity(
        make_settings(TWILIO_VALIDATE_SIGNATURES="false", PUBLIC_BASE_URL="http://127.0.0.1:8000")
    )
    assert security.verify_upgrade(_ws(None))
    assert security.verify_start(_start({})) is None


@pytest.mark.parametrize(
    "env",
    [
        {"TWILIO_AUTH_TOKEN": ""},  # validation on (the default) without a token
        {"EDGE_API_TOKEN": "short"},
        {"EDGE_STREAM_TOKEN_SECRET": "short"},
        {"TWILIO_FROM_NUMBER": "5550009999"},
        {"EDGE_AGENT_VARIABLES": '{"vb_token": "x"}'},
        {"EDGE_AGENT_VARIABLES": '["a"]'},
        {"EDGE_TRANSFER_DESTINATIONS": "+15550001111,operator"},
        {"EDGE_API_AGENT_OVERRIDES": "agent_id,voice"},
    ],
)
def test_unsafe_or_malformed_settings_stop_the_edge_at_start_up(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        make_settings(**env)


def test_generated_stream_secret_when_none_is_configured() -> None:
    settings = EdgeSettings.from_env(Env({"TWILIO_VALIDATE_SIGNATURES": "false"}))
    assert len(settings.stream_token_secret) >= 32


def test_replicas_sharing_the_twilio_settings_accept_each_others_tokens() -> None:
    """No EDGE_STREAM_TOKEN_SECRET: the secret is derived from TWILIO_AUTH_TOKEN, the same everywhere."""
    one = EdgeSecurity(make_settings(EDGE_STREAM_TOKEN_SECRET=""))
    restarted = EdgeSecurity(make_settings(EDGE_STREAM_TOKEN_SECRET=""))
    other_account = EdgeSecurity(make_settings(EDGE_STREAM_TOKEN_SECRET="", TWILIO_AUTH_TOKEN="f" * 32))
    assert restarted.verify_start(_start({"vb_token": one.mint_inbound(CALL)})) is None
    assert other_account.verify_start(_start({"vb_token": one.mint_inbound(CALL)})) is not None


def test_derived_secret_is_not_the_auth_token() -> None:
    settings = make_settings(EDGE_STREAM_TOKEN_SECRET="")
    assert settings.stream_token_secret != settings.twilio_auth_token
    assert len(settings.stream_token_secret) == 64
