"""What Twilio knows about one simulated call before its stream opens: the sids, the numbers, the
signature of the WebSocket upgrade, the forms it POSTs (Voice URL, `<Connect action>`), and the TwiML
it follows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.etree import ElementTree

if TYPE_CHECKING:
    from .balancer import EdgePool


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
    direction: str = "inbound"  # or outbound-api: a call placed through the REST API
    custom_parameters: dict[str, str] = field(default_factory=dict)
    auth_token: str | None = None
    signature_url: str | None = None
    frame_ms: int = 20
    open_timeout: float = 10.0
    # The `<Connect action>` of the TwiML that opened this stream: when the stream closes without the
    # caller hanging up, Twilio requests it and follows its TwiML (a new stream, or the call ends).
    action_url: str | None = None
    # The edges behind the public URL (a load balancer's backends): every socket and request of the
    # call goes to one of them; None: to the URL as written.
    edges: EdgePool | None = None
    # Keep every media message in `sent` and `received` (tests read them). A load run's callers keep
    # only the other messages: a hundred thousand kept dicts make the collector pause the callers'
    # event loop for 100+ ms, long enough to be counted as the services' playback gaps.
    keep_media: bool = True

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
        """The standard parameters Twilio POSTs to the number's Voice URL (and to other call webhooks)."""
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": call_status,
            "Called": self.to_number,
            "Caller": self.from_number,
            "Direction": self.direction,
            "From": self.from_number,
            "To": self.to_number,
        }

    def action_form(self, call_status: str = "in-progress") -> dict[str, str]:
        """What Twilio POSTs to a `<Connect action>`: its standard request parameters (the Connect
        page names no Stream-specific ones), the call still in progress when its stream broke."""
        return self.voice_webhook_form(call_status)


@dataclass(frozen=True)
class Instruction:
    """What a TwiML document tells Twilio to do with the call: open a ``<Connect><Stream>`` (and
    request ``action`` when it ends), or, with no stream, end the call (``<Hangup/>`` or no verb)."""

    stream_url: str | None
    parameters: dict[str, str]
    action: str | None


def twiml_instruction(twiml: str) -> Instruction:
    """The first verb Twilio would act on in a TwiML document, for the verbs the edge writes."""
    root = ElementTree.fromstring(twiml)  # noqa: S314 (TwiML from our own server under test)
    if root.tag != "Response":
        raise ValueError(f"TwiML root is <{root.tag}>, not <Response>")
    verb = next(iter(root), None)
    if verb is None or verb.tag != "Connect":
        return Instruction(None, {}, None)  # <Hangup/>, or nothing: the call ends
    stream = verb.find("Stream")
    if stream is None or not stream.get("url"):
        raise ValueError("TwiML has no <Connect><Stream url=...>")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return Instruction(stream.get("url", ""), params, verb.get("action"))


def stream_from_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """The ``<Connect><Stream>`` url and ``<Parameter>`` values of a TwiML document, as Twilio uses them."""
    step = twiml_instruction(twiml)
    if step.stream_url is None:
        raise ValueError("TwiML has no <Connect><Stream url=...>")
    return step.stream_url, step.parameters
