"""Who may talk to the edge: Twilio-signed webhooks, signed WebSocket upgrades, per-call stream tokens.

Every URL that is checked is rebuilt from PUBLIC_BASE_URL and the path the app routed, never from the
Host header or scheme of the request: behind a TLS-terminating proxy or a tunnel those differ from what
Twilio signed (docs/twilio.md#behind-proxies-and-tunnels). Every check fails closed. With
TWILIO_VALIDATE_SIGNATURES=false (explicit, local development only) all of them pass.

Stream tokens: an inbound call's token is bound to its CallSid (known to the signed voice webhook). An
outbound call's TwiML is written before Twilio has assigned a CallSid, so its token is bound to the
call's From/To instead (also carried as <Parameter>s inside the same TwiML, and covered by the MAC).
Either way a token is single use and short-lived (StreamTokens).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, WebSocket

from . import call_params
from .config import EdgeSettings
from .metrics import WEBHOOKS_REJECTED
from .twilio import media_streams as ms
from .twilio.signature import SIGNATURE_HEADER, StreamTokens, TwilioSignatureValidator, public_url

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
MAX_FORM_FIELDS = 200


@dataclass(frozen=True)
class SignedRequest:
    """A webhook body that passed the signature check: form fields in order, or a raw JSON body."""

    form: list[tuple[str, str]]
    raw: bytes

    def field(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.form if k == name), default)

    def as_dict(self) -> dict[str, str]:
        """First value of each field (Twilio sends each status field once)."""
        out: dict[str, str] = {}
        for name, value in self.form:
            out.setdefault(name, value)
        return out


def outbound_binding(from_number: str, to_number: str) -> str:
    """What an outbound call's stream token is bound to (there is no CallSid yet when it is minted)."""
    return f"outbound\x00{from_number}\x00{to_number}"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body over {limit} bytes")
    return bytes(body)


class EdgeSecurity:
    """The edge's checks, built once from settings (see wiring.py)."""

    def __init__(self, settings: EdgeSettings) -> None:
        self._settings = settings
        self.enforcing = settings.validate_signatures
        self._validator = (
            TwilioSignatureValidator(settings.twilio_auth_token or "") if self.enforcing else None
        )
        self._tokens = StreamTokens(settings.stream_token_secret.encode(), settings.stream_token_ttl_s)

    # --- minting (in the TwiML we answer or send)

    def mint_inbound(self, call_sid: str) -> str:
        return self._tokens.mint(call_sid)

    def mint_outbound(self, from_number: str, to_number: str) -> str:
        return self._tokens.mint(outbound_binding(from_number, to_number))

    # --- the Media Streams socket

    def verify_upgrade(self, ws: WebSocket) -> bool:
        """The upgrade's X-Twilio-Signature over the wss:// URL written in our TwiML (no params)."""
        if self._validator is None:
            return True
        return self._validator.validate_websocket(
            self._settings.media_stream_url, ws.headers.get(SIGNATURE_HEADER)
        )

    def verify_start(self, start: ms.Start) -> str | None:
        """None if the `start` carries a valid, unspent token for this call; else why not (for logs)."""
        if not self.enforcing:
            return None
        params = start.custom_parameters
        token = params.get(call_params.TOKEN)
        problem = self._tokens.check(token, start.call_sid)
        if problem == "bad signature or wrong call" and params.get(call_params.DIRECTION) == "outbound":
            binding = outbound_binding(params.get(call_params.FROM, ""), params.get(call_params.TO, ""))
            problem = self._tokens.check(token, binding)
        return problem

    # --- webhooks

    async def signed_request(self, request: Request, endpoint: str) -> SignedRequest:
        """Read and authenticate a Twilio webhook; raises HTTPException 4xx (403 for any bad signature)."""
        raw = await read_body(request, self._settings.max_webhook_bytes)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        url = public_url(self._settings.public_base_url, request.url.path, request.url.query)
        signature = request.headers.get(SIGNATURE_HEADER)
        if content_type == JSON_TYPE:
            if self._validator is not None and not self._validator.validate_json(url, raw, signature):
                self._reject(endpoint, "bad_signature" if signature else "no_signature")
            return SignedRequest([], raw)
        if content_type not in (FORM_TYPE, ""):
            WEBHOOKS_REJECTED.labels(endpoint, "content_type").inc()
            raise HTTPException(415, "Twilio webhooks are form-encoded")
        try:
            form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError):
            WEBHOOKS_REJECTED.labels(endpoint, "malformed").inc()
            raise HTTPException(400, "malformed form body") from None
        if self._validator is not None and not self._validator.validate_form(url, form, signature):
            self._reject(endpoint, "bad_signature" if signature else "no_signature")
        return SignedRequest(form, raw)

    def _reject(self, endpoint: str, reason: str) -> None:
        WEBHOOKS_REJECTED.labels(endpoint, reason).inc()
        what = "invalid" if reason == "bad_signature" else "missing"
        log.warning("%s refused: %s X-Twilio-Signature", endpoint, what)
        raise HTTPException(403, "invalid X-Twilio-Signature")
