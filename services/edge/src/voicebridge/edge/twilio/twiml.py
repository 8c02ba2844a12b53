"""TwiML the edge returns to Twilio, built with ``twilio.twiml.voice_response`` (docs/twilio.md#twiml).

Rules (https://www.twilio.com/docs/voice/twiml/stream): the stream URL is ``wss`` and carries no query
string (per-call data goes in ``<Parameter>``s, whose name + value must be under 500 characters); after
``</Connect>`` comes ``<Hangup/>`` or nothing, never a ``<Pause>`` (callers were left on dead air).
``<Connect action>`` (https://www.twilio.com/docs/voice/twiml/connect) is an absolute http(s) URL (inline
TwiML, as outbound calls use, refuses a relative one: error 15004); unlike the stream url it may carry a
query string, which Twilio requests and signs as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Dial, VoiceResponse

__all__ = ["MAX_PARAMETER_CHARS", "TwimlError", "connect_stream", "dial", "hangup"]

MAX_PARAMETER_CHARS = 500  # Twilio: combined name + value length must be *under* 500
MAX_INLINE_TWIML_CHARS = 4000  # calls.create(twiml=...) / update(twiml=...) limit


class TwimlError(ValueError):
    """TwiML that Twilio would reject or mis-handle."""


def _check_stream_url(url: str, allow_insecure: bool) -> None:
    parts = urlsplit(url)
    allowed = ("wss", "ws") if allow_insecure else ("wss",)
    if parts.scheme not in allowed or not parts.netloc:
        raise TwimlError(f"stream url must be an absolute wss:// URL (Twilio error 31922), got {url!r}")
    if parts.query or parts.fragment or url.endswith("?"):
        raise TwimlError("stream url must not have a query string (Twilio error 31920); use <Parameter>s")


def _check_parameters(parameters: Mapping[str, str]) -> None:
    for name, value in parameters.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise TwimlError(f"<Parameter> name and value must be strings (name {name!r})")
        if len(name) + len(value) >= MAX_PARAMETER_CHARS:
            raise TwimlError(
                f"<Parameter> {name[:40]!r}: name + value is {len(name) + len(value)} characters; "
                f"Twilio requires under {MAX_PARAMETER_CHARS}"
            )


def _check_action(action: str) -> None:
    parts = urlsplit(action)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise TwimlError(
            f"<Connect action> must be an absolute http(s) URL (Twilio error 15004), got {action!r}"
        )


def connect_stream(
    stream_url: str,
    parameters: Mapping[str, str],
    *,
    action: str | None = None,
    status_callback: str | None = None,
    stream_name: str | None = None,
    hangup_after: bool = True,
    allow_insecure: bool = False,
) -> str:
    """Inbound-call answer: a bidirectional ``<Connect><Stream>`` to the edge's media socket.

    ``action`` is requested (POST) when the stream ends, and its answer is the call's next TwiML;
    ``status_callback`` receives stream-started/stopped/error (the only place handshake failures show);
    ``allow_insecure`` permits ``ws://`` for local peers only — real Twilio dials ``wss`` alone.
    ``hangup_after`` puts ``<Hangup/>`` after ``</Connect>``: reached only without an ``action``.
    """
    _check_stream_url(stream_url, allow_insecure)
    _check_parameters(parameters)
    if action is not None:
        _check_action(action)
    response = VoiceResponse()
    connect = response.connect(action=action, method="POST") if action else response.connect()
    stream = connect.stream(
        url=stream_url,
        name=stream_name,
        status_callback=status_callback,
        status_callback_method="POST" if status_callback else None,
    )
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    if hangup_after:
        response.hangup()
    return str(response)


def dial(
    destination: str,
    *,
    caller_id: str | None = None,
    timeout_s: int | None = None,
    action: str | None = None,
    time_limit_s: int | None = None,
) -> str:
    """Transfer TwiML: ``<Dial>`` a number (E.164) or a ``sip:`` URI, then hang up when the leg ends."""
    if not destination:
        raise TwimlError("transfer destination is empty")
    response = VoiceResponse()
    leg = Dial(caller_id=caller_id, timeout=timeout_s, action=action, time_limit=time_limit_s)
    if destination.startswith(("sip:", "sips:")):
        leg.sip(destination)
    else:
        leg.number(destination)
    response.append(leg)
    if action is None:
        response.hangup()
    xml = str(response)
    if len(xml) > MAX_INLINE_TWIML_CHARS:
        raise TwimlError(
            f"TwiML is {len(xml)} characters; inline TwiML is limited to {MAX_INLINE_TWIML_CHARS}"
        )
    return xml


def hangup() -> str:
    """End the call (e.g. when the stream cannot be authenticated or the service is draining)."""
    response = VoiceResponse()
    response.hangup()
    return str(response)
