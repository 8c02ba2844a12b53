"""What Twilio knows about one simulated call before its stream opens: the sids, the numbers, the
signature of the WebSocket upgrade, the form it POSTs to the Voice URL, and the TwiML it follows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from xml.etree import ElementTree


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class CallerConfig:
    """One simulated call. ``from_number``/``to_number`` are not part of the stream (Twilio's ``start``
    carries no numbers); they feed :meth:`voice_webhook_form`, the form Twilio POSTs to the Voice URL."""

    url: str
    call_sid: str = field(default_factory=lambda: _sid("CA"))
    stream_sid: str = field(default_factory=lambda: _sid("MZ"))
    account_sid: str = field(default_factory=lambda: _sid("AC"))
    from_number: str = "+15550001111"
    to_number: str = "+15550002222"
    custom_parameters: dict[str, str] = field(default_factory=dict)
    auth_token: str | None = None
    signature_url: str | None = None
    frame_ms: int = 20
    open_timeout: float = 10.0

    def public_url(self) -> str:
        """The URL Twilio signs: ``signature_url``, else ``url`` with ws→wss (Twilio only dials wss)."""
        if self.signature_url:
            return self.signature_url
        return "wss://" + self.url.removeprefix("ws://") if self.url.startswith("ws://") else self.url

    def signature(self) -> str | None:
        """``X-Twilio-Signature`` for the upgrade: HMAC-SHA1 of the public URL with no params."""
        if self.auth_token is None:
            return None
        from twilio.request_validator import RequestValidator

        return RequestValidator(self.auth_token).compute_signature(self.public_url(), {})

    def voice_webhook_form(self, call_status: str = "ringing") -> dict[str, str]:
        """The standard parameters Twilio POSTs to the number's Voice URL for this inbound call."""
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": call_status,
            "Called": self.to_number,
            "Caller": self.from_number,
            "Direction": "inbound",
            "From": self.from_number,
            "To": self.to_number,
        }


def stream_from_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """The ``<Connect><Stream>`` url and ``<Parameter>`` values of a TwiML document, as Twilio uses them."""
    root = ElementTree.fromstring(twiml)  # noqa: S314 (TwiML from our own server under test)
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise ValueError("TwiML has no <Connect><Stream url=...>")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params
