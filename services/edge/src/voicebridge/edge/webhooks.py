"""Twilio's webhooks: the voice webhook (answers TwiML), stream status and call status callbacks.

Every one of them is signature-checked (security.EdgeSecurity.signed_request) before anything else.
The voice webhook answers `<Connect><Stream>` to our Media Streams socket with the per-call token and
the caller's numbers as <Parameter>s (Twilio's `start` carries no numbers). When the stream ends,
Twilio requests the Connect's `action` (the stream action route): `<Hangup/>` when the call is over or
an edge ended it on purpose, a re-opened stream when the edge carrying it died (stream_action.py) —
never dead air (docs/twilio.md#twiml).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, HTTPException, Request, Response

from voicebridge.runtime.logs import call_context
from voicebridge.runtime.privacy import mask_number

from . import call_params
from .call_status import BoundedCallStatus
from .config import CALL_STATUS_PATH, STREAM_ACTION_PATH, STREAM_STATUS_PATH, VOICE_WEBHOOK_PATH, EdgeSettings
from .metrics import CALL_STATUS, CALL_STATUS_IGNORED, STREAM_ACTIONS, STREAM_STATUS
from .security import EdgeSecurity
from .stream_action import EndedCalls, Outcome, action_url, decide, parse_attempt
from .twilio import twiml
from .twilio.status_callbacks import parse_status_callback

log = logging.getLogger(__name__)

TWIML_TYPE = "text/xml"
STREAM_EVENTS = frozenset({"stream-started", "stream-stopped", "stream-error"})


def _twilio_form(
    fields: Mapping[str, str],
    docs: str,
    answer: dict[int | str, object],
    query: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """OpenAPI for a webhook Twilio POSTs form-encoded and signs: the fields the edge reads (Twilio
    sends more), the answers, and Twilio's page; `query`: integers the edge wrote into the URL. The
    handler reads the raw form itself: the signature covers every field, so FastAPI never parses it."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            name: {"type": "string", "description": d} for name, d in fields.items()
                        },
                        "additionalProperties": {"type": "string"},
                    }
                }
            },
        },
        "parameters": [
            {
                "name": "X-Twilio-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "HMAC-SHA1 of PUBLIC_BASE_URL + path and the form (docs/twilio.md#signatures)",
            },
            *(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0},
                    "description": d,
                }
                for name, d in (query or {}).items()
            ),
        ],
        "responses": {
            **answer,
            "400": {"description": "malformed form, or a required field missing"},
            "403": {"description": "missing or invalid X-Twilio-Signature"},
            "413": {"description": "body too large"},
            "415": {"description": "not form-encoded"},
        },
        "externalDocs": {"url": docs},
    }


_VOICE_DOCS = _twilio_form(
    {
        "CallSid": "the call (required)",
        "From": "the caller's number",
        "To": "the number called",
        "Direction": "inbound, or outbound-api / outbound-dial",
    },
    "https://www.twilio.com/docs/voice/twiml#request-parameters",
    {
        "200": {
            "description": "<Connect><Stream> TwiML",
            "content": {TWIML_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
_STREAM_STATUS_DOCS = _twilio_form(
    {
        "CallSid": "the call",
        "StreamSid": "the stream",
        "StreamEvent": "stream-started, stream-stopped or stream-error",
        "StreamError": "with stream-error: what failed",
    },
    "https://www.twilio.com/docs/voice/twiml/stream#statuscallback",
    {"204": {"description": "logged"}},
)
_STREAM_ACTION_DOCS = _twilio_form(
    {
        "CallSid": "the call (required)",
        "CallStatus": "in-progress while the call is on; completed (or another final status) once it ended",
        "From": "the caller's number (the re-opened stream carries it again)",
        "To": "the number called",
        "Direction": "inbound, or outbound-api / outbound-dial",
    },
    "https://www.twilio.com/docs/voice/twiml/connect#action",
    {
        "200": {
            "description": "<Hangup/>, or <Connect><Stream> re-opening the call's stream (edge died)",
            "content": {TWIML_TYPE: {"schema": {"type": "string"}}},
        }
    },
    query={"attempt": "how many times this call's stream was re-opened (the edge writes it in the TwiML)"},
)
_CALL_STATUS_DOCS = _twilio_form(
    {
        "CallSid": "the call (required)",
        "CallStatus": "queued, ringing, in-progress, completed, busy, failed, no-answer or canceled",
        "SequenceNumber": "order of the callbacks of one call, from 0 (required)",
        "CallDuration": "seconds, once completed",
        "AnsweredBy": "with answering machine detection",
    },
    "https://www.twilio.com/docs/voice/api/call-resource#statuscallback",
    {"204": {"description": "applied, or ignored as out of order"}},
)


def stream_twiml(
    settings: EdgeSettings,
    *,
    token: str,
    from_number: str,
    to_number: str,
    direction: str,
    variables: Mapping[str, str] | None = None,
    attempt: int = 0,
) -> str:
    """The `<Connect><Stream>` TwiML of a call, inbound (webhook answer) or outbound (inline); with
    `attempt` > 0, the stream's re-open number `attempt` after its edge died."""
    parameters = {
        **settings.agent_variables,
        **(variables or {}),
        call_params.TOKEN: token,
        call_params.FROM: from_number,
        call_params.TO: to_number,
        call_params.DIRECTION: direction,
        **({call_params.REOPEN: str(attempt)} if attempt else {}),
    }
    return twiml.connect_stream(
        settings.media_stream_url,
        parameters,
        action=action_url(settings.public_url(STREAM_ACTION_PATH), attempt),
        status_callback=settings.public_url(STREAM_STATUS_PATH),
        hangup_after=True,
        allow_insecure=settings.media_stream_url.startswith("ws://"),  # local development only
    )


def _direction(signed_direction: str) -> str:
    return "outbound" if signed_direction.startswith("outbound") else "inbound"


def router(
    settings: EdgeSettings, security: EdgeSecurity, statuses: BoundedCallStatus, ended: EndedCalls
) -> APIRouter:
    """`ended`: the calls this edge ended on purpose (shared with the media streams, app.py)."""
    routes = APIRouter()

    @routes.post(
        VOICE_WEBHOOK_PATH, summary="Twilio voice webhook", response_class=Response, openapi_extra=_VOICE_DOCS
    )
    async def voice(request: Request) -> Response:
        signed = await security.signed_request(request, "voice")
        call_sid = signed.field("CallSid")
        if not call_sid:
            raise HTTPException(400, "CallSid is required")
        with call_context(call_sid):
            direction = _direction(signed.field("Direction"))
            body = stream_twiml(
                settings,
                token=security.mint_inbound(call_sid),
                from_number=signed.field("From"),
                to_number=signed.field("To"),
                direction=direction,
            )
            log.info("answering %s call from %s", direction, mask_number(signed.field("From")))
        return Response(body, media_type=TWIML_TYPE)

    @routes.post(
        STREAM_ACTION_PATH,
        summary="Twilio <Connect action>: the call's stream ended",
        response_class=Response,
        openapi_extra=_STREAM_ACTION_DOCS,
    )
    async def stream_action(request: Request) -> Response:
        signed = await security.signed_request(request, "stream_action")
        call_sid = signed.field("CallSid")
        if not call_sid:
            raise HTTPException(400, "CallSid is required")
        try:
            attempt = parse_attempt(request.url.query)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        with call_context(call_sid):
            outcome = decide(
                signed.as_dict(),
                ended_here=call_sid in ended,
                attempt=attempt,
                max_reopens=settings.max_stream_reopens,
            )
            STREAM_ACTIONS.labels(outcome.value).inc()
            if outcome is not Outcome.REOPEN:
                log.info("stream ended (%s, after %d re-opens): hanging up", outcome.value, attempt)
                return Response(twiml.hangup(), media_type=TWIML_TYPE)
            log.warning("stream lost while the call is on (its edge died?): re-open %d", attempt + 1)
            body = stream_twiml(
                settings,
                token=security.mint_inbound(call_sid),
                from_number=signed.field("From"),
                to_number=signed.field("To"),
                direction=_direction(signed.field("Direction")),
                attempt=attempt + 1,
            )
        return Response(body, media_type=TWIML_TYPE)

    @routes.post(
        STREAM_STATUS_PATH,
        summary="Twilio stream status callback",
        status_code=204,
        response_class=Response,
        openapi_extra=_STREAM_STATUS_DOCS,
    )
    async def stream_status(request: Request) -> Response:
        signed = await security.signed_request(request, "stream_status")
        event = signed.field("StreamEvent")
        STREAM_STATUS.labels(event if event in STREAM_EVENTS else "other").inc()
        with call_context(signed.field("CallSid")):
            if event == "stream-error":
                log.warning("Twilio stream error: %s", signed.field("StreamError")[:300] or "(no detail)")
            else:
                log.info("Twilio stream %s: %s", signed.field("StreamSid") or "?", event[:40] or "?")
        return Response(status_code=204)

    @routes.post(
        CALL_STATUS_PATH,
        summary="Twilio call status callback",
        status_code=204,
        response_class=Response,
        openapi_extra=_CALL_STATUS_DOCS,
    )
    async def call_status(request: Request) -> Response:
        signed = await security.signed_request(request, "call_status")
        try:
            event = parse_status_callback(signed.as_dict())
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        with call_context(event.call_sid):
            applied = statuses.apply(event)
            if applied is None:
                CALL_STATUS_IGNORED.inc()
                current = statuses.status(event.call_sid)
                log.info(
                    "call status %s (#%d) ignored: already %s (#%d)",
                    event.status,
                    event.sequence_number,
                    current.status if current else "?",
                    current.sequence_number if current else -1,
                )
            else:
                CALL_STATUS.labels(event.status).inc()
                extra = f", {event.duration_s}s" if event.duration_s is not None else ""
                extra += f", answered by {event.answered_by}" if event.answered_by else ""
                log.info("call status: %s (#%d%s)", event.status, event.sequence_number, extra)
        return Response(status_code=204)

    return routes
