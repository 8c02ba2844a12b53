"""X-Twilio-Signature validation and per-call stream tokens, with signatures from RequestValidator itself."""

import hashlib

import pytest
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from voicebridge.edge.twilio.signature import (
    StreamTokens,
    TwilioSignatureValidator,
    public_url,
    websocket_url,
)

TOKEN = "12345678901234567890123456789012"
SIGNER = RequestValidator(TOKEN)
V = TwilioSignatureValidator(TOKEN)
URL = "https://voice.example.com/twilio/voice"
FORM = {"CallSid": "CA1", "AccountSid": "AC1", "From": "+15550001111", "To": "+15550002222", "Digits": "1234"}


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        ("https://voice.example.com", "/twilio/voice", "", "https://voice.example.com/twilio/voice"),
        (
            "https://voice.example.com/",
            "twilio/voice",
            "a=1&b=2",
            "https://voice.example.com/twilio/voice?a=1&b=2",
        ),
        ("https://h.example.com/prefix/", "/twilio/voice", "", "https://h.example.com/prefix/twilio/voice"),
        ("http://127.0.0.1:8000", "/twilio/voice", "", "http://127.0.0.1:8000/twilio/voice"),
    ],
)
def test_public_url_joins_configured_base_and_request_path(
    base: str, path: str, query: str, expected: str
) -> None:
    assert public_url(base, path, query) == expected


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://voice.example.com", "wss://voice.example.com/twilio/media"),
        ("https://voice.example.com:8443/x", "wss://voice.example.com:8443/x/twilio/media"),
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/twilio/media"),
    ],
)
def test_websocket_url_maps_https_to_wss(base: str, expected: str) -> None:
    assert websocket_url(base, "/twilio/media") == expected


def test_public_url_rejects_relative_base() -> None:
    with pytest.raises(ValueError, match="absolute"):
        public_url("voice.example.com", "/x")


def test_form_signature_valid_is_accepted() -> None:
    assert V.validate_form(URL, FORM, SIGNER.compute_signature(URL, FORM))


def test_form_signature_with_port_variant_is_accepted() -> None:
    # Twilio may sign with or without the default port; the validator tries both.
    assert V.validate_form(
        URL, FORM, SIGNER.compute_signature("https://voice.example.com:443/twilio/voice", FORM)
    )


def test_form_with_repeated_fields_uses_every_value() -> None:
    items = [("StatusCallbackEvent", "ringing"), ("StatusCallbackEvent", "answered"), ("CallSid", "CA1")]
    multi = FormData(items)
    signer_params = {"StatusCallbackEvent": ["ringing", "answered"], "CallSid": ["CA1"]}

    class _MultiDict(dict):  # what RequestValidator's own tests use: getlist
        def getlist(self, k: str) -> list[str]:
            return self[k]

    sig = SIGNER.compute_signature(URL, _MultiDict(signer_params))
    assert V.validate_form(URL, multi, sig)
    assert V.validate_form(URL, items, sig)
    assert not V.validate_form(URL, FormData(items[1:]), sig)


@pytest.mark.parametrize(
    ("url", "form", "signature"),
    [
        ("https://evil.example.com/twilio/voice", FORM, None),
        (URL + "?x=1", FORM, None),
        (URL, FORM | {"From": "+15559999999"}, None),
        (URL, {k: v for k, v in FORM.items() if k != "Digits"}, None),
        (URL, FORM | {"Extra": "1"}, None),
        (URL, FORM, ""),
        (URL, FORM, "not-a-signature"),
        (URL, FORM | {"File": object()}, None),
    ],
    ids=[
        "host",
        "query",
        "tampered-field",
        "missing-field",
        "extra-field",
        "empty-header",
        "garbage",
        "file",
    ],
)
def test_form_signature_tampering_is_rejected(url: str, form: dict, signature: str | None) -> None:
    sig = SIGNER.compute_signature(URL, FORM) if signature is None else signature
    assert not V.validate_form(url, form, sig)


def test_form_missing_header_is_rejected() -> None:
    assert not V.validate_form(URL, FORM, None)


def test_wrong_auth_token_is_rejected() -> None:
    sig = RequestValidator("other-token").compute_signature(URL, FORM)
    assert not V.validate_form(URL, FORM, sig)


def _json_url(body: str) -> str:
    return f"{URL}?bodySHA256={hashlib.sha256(body.encode()).hexdigest()}"


def test_json_body_signature_valid_is_accepted() -> None:
    body = '{"CallSid":"CA1","event":"x"}'
    url = _json_url(body)
    sig = SIGNER.compute_signature(url, {})
    assert V.validate_json(url, body, sig)
    assert V.validate_json(url, body.encode(), sig)


@pytest.mark.parametrize("case", ["tampered-body", "no-body-hash", "missing-header", "non-utf8"])
def test_json_body_signature_is_rejected(case: str) -> None:
    body = '{"CallSid":"CA1"}'
    url = _json_url(body)
    sig = SIGNER.compute_signature(url, {})
    if case == "tampered-body":
        assert not V.validate_json(url, '{"CallSid":"CA2"}', sig)
    elif case == "no-body-hash":
        assert not V.validate_json(URL, body, SIGNER.compute_signature(URL, {}))
    elif case == "missing-header":
        assert not V.validate_json(url, body, None)
    else:
        assert not V.validate_json(url, b"\xff\xfe", sig)


def test_websocket_upgrade_signature_is_checked_against_the_wss_url() -> None:
    ws_url = websocket_url("https://voice.example.com", "/twilio/media")
    sig = SIGNER.compute_signature(ws_url, {})
    assert V.validate_websocket(ws_url, sig)
    assert not V.validate_websocket("https://voice.example.com/twilio/media", sig)
    assert not V.validate_websocket("wss://voice.example.com/twilio/other", sig)
    assert not V.validate_websocket(ws_url, None)
    assert not V.validate_websocket(ws_url, RequestValidator("x" * 32).compute_signature(ws_url, {}))


def test_validator_needs_a_token() -> None:
    with pytest.raises(ValueError, match="Auth Token"):
        TwilioSignatureValidator("")


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_stream_token_is_accepted_once_for_its_call() -> None:
    tokens = StreamTokens(b"s" * 32, ttl_s=60, clock=_Clock())
    token = tokens.mint("CA1")
    assert len(token) < 100
    assert tokens.check(token, "CA1") is None
    assert tokens.check(token, "CA1") == "already used"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: None, "missing"),
        (lambda t: "", "missing"),
        (lambda t: "abc", "malformed"),
        (lambda t: t.replace(".", ".x", 1), "malformed"),
        (lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), "bad signature or wrong call"),
        (
            lambda t: t.split(".")[0] + "." + str(int(t.split(".")[1]) + 100) + "." + t.split(".")[2],
            "bad signature",
        ),
    ],
    ids=["none", "empty", "one-part", "bad-expiry", "bad-mac", "extended-expiry"],
)
def test_stream_token_rejects_forgeries(mutate, reason: str) -> None:
    tokens = StreamTokens(b"s" * 32, clock=_Clock())
    assert reason in (tokens.check(mutate(tokens.mint("CA1")), "CA1") or "")


def test_stream_token_for_another_call_or_secret_is_rejected() -> None:
    clock = _Clock()
    tokens = StreamTokens(b"s" * 32, clock=clock)
    assert tokens.check(tokens.mint("CA1"), "CA2") == "bad signature or wrong call"
    assert not StreamTokens(b"t" * 32, clock=clock).verify(tokens.mint("CA1"), "CA1")


def test_stream_token_expires() -> None:
    clock = _Clock()
    tokens = StreamTokens(b"s" * 32, ttl_s=30, clock=clock)
    token = tokens.mint("CA1")
    clock.now += 31
    assert tokens.check(token, "CA1") == "expired"


def test_stream_token_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        StreamTokens(b"short")
