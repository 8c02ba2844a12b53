"""The outbound-call API: `POST /calls` places a call that runs our stream TwiML when answered.

    POST /calls   Authorization: Bearer $EDGE_API_TOKEN
    {"to": "+15551234567", "from": "+15557654321" (default TWILIO_FROM_NUMBER), "variables": {"name": "Ada"}}
    -> 201 {"call_sid": "CA…", "status": "queued", "to": …, "from": …}

Off (503, saying why) without EDGE_API_TOKEN or Twilio REST credentials: an API that places calls on
someone's bill must never be open by accident. The token is checked in constant time before the body is
even read. The TwiML is inline (no webhook round trip) with status callbacks for every call event.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from voicebridge.runtime.logs import call_context

from .config import CALL_STATUS_PATH, CALLS_API_PATH, E164, EdgeSettings, variable_problem
from .metrics import API_REQUESTS_REJECTED, OUTBOUND_CALLS
from .security import EdgeSecurity, read_body
from .twilio import twiml
from .twilio.rest import TwilioApiError, TwilioRest
from .webhooks import stream_twiml

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_VARIABLES = 32


def _error(status: int, message: str, **extra: object) -> HTTPException:
    return HTTPException(status, {"error": message, **extra})


def check_bearer(settings: EdgeSettings, authorization: str | None) -> None:
    """401 without a bearer token, 403 with a wrong one, 503 when the API is not configured."""
    if not settings.api_token:
        API_REQUESTS_REJECTED.labels("disabled").inc()
        raise _error(503, "the calls API is disabled: set EDGE_API_TOKEN on the edge to enable it")
    scheme, _, supplied = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        API_REQUESTS_REJECTED.labels("no_token").inc()
        raise HTTPException(
            401, {"error": "missing bearer token"}, headers={"WWW-Authenticate": 'Bearer realm="voicebridge"'}
        )
    if not hmac.compare_digest(supplied.strip().encode(), settings.api_token.encode()):
        API_REQUESTS_REJECTED.labels("bad_token").inc()
        raise _error(403, "invalid bearer token")


def parse_call_request(body: bytes, default_from: str | None) -> tuple[str, str, dict[str, str]]:
    """(to, from, variables) from the JSON body; raises 400/422 with what is wrong."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _error(400, "body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _error(400, "body must be a JSON object")
    unknown = set(data) - {"to", "from", "variables"}
    if unknown:
        raise _error(422, f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    to, from_ = data.get("to"), data.get("from") or default_from
    if not isinstance(to, str) or not E164.fullmatch(to):
        raise _error(422, "`to` must be an E.164 number like +15551234567")
    if from_ is None:
        raise _error(422, "`from` is required (no TWILIO_FROM_NUMBER configured)")
    if not isinstance(from_, str) or not E164.fullmatch(from_):
        raise _error(422, "`from` must be an E.164 number like +15551234567")
    variables = data.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise _error(422, "`variables` must be an object of strings")
    if len(variables) > MAX_VARIABLES:
        raise _error(422, f"at most {MAX_VARIABLES} variables")
    for name, value in variables.items():
        problem = variable_problem(name, value)
        if problem:
            raise _error(422, problem)
    return to, from_, dict(variables)


def router(settings: EdgeSettings, security: EdgeSecurity, rest: TwilioRest | None) -> APIRouter:
    routes = APIRouter()

    @routes.post(CALLS_API_PATH, status_code=201)
    async def place_call(request: Request) -> JSONResponse:
        check_bearer(settings, request.headers.get("authorization"))
        if rest is None:
            API_REQUESTS_REJECTED.labels("no_rest").inc()
            raise _error(503, "outbound calls need TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN on the edge")
        to, from_, variables = parse_call_request(
            await read_body(request, MAX_BODY_BYTES), settings.twilio_from_number
        )
        try:
            body = stream_twiml(
                settings,
                token=security.mint_outbound(from_, to),
                from_number=from_,
                to_number=to,
                direction="outbound",
                variables=variables,
            )
        except twiml.TwimlError as exc:
            raise _error(422, str(exc)) from None
        if len(body) > twiml.MAX_INLINE_TWIML_CHARS:
            limit = twiml.MAX_INLINE_TWIML_CHARS
            raise _error(422, f"variables too long: inline TwiML is limited to {limit} characters")
        try:
            created = await rest.create_call(
                to=to, from_=from_, twiml=body, status_callback=settings.public_url(CALL_STATUS_PATH)
            )
        except TwilioApiError as exc:
            OUTBOUND_CALLS.labels("twilio_error").inc()
            log.warning("outbound call to %s refused by Twilio: %s", to, exc)
            raise _error(
                502,
                "Twilio refused the call",
                twilio_status=exc.status,
                twilio_code=exc.code,
                twilio_message=exc.message[:300],
            ) from None
        except Exception as exc:
            OUTBOUND_CALLS.labels("unreachable").inc()
            log.error("outbound call to %s failed: %s", to, type(exc).__name__)
            raise _error(502, "Twilio could not be reached") from None
        OUTBOUND_CALLS.labels("created").inc()
        with call_context(created.sid):
            log.info("outbound call placed to %s from %s (%s)", to, from_, created.status)
        return JSONResponse(
            {"call_sid": created.sid, "status": created.status, "to": to, "from": from_}, status_code=201
        )

    return routes
