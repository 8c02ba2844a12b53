"""The outbound-call API: `POST /calls` places a call that runs our stream TwiML when answered.

    POST /calls   Authorization: Bearer $EDGE_API_TOKEN
    {"to": "+15551234567", "from": "+15557654321" (default TWILIO_FROM_NUMBER), "variables": {"name": "Ada"}}
    -> 201 {"call_sid": "CA…", "status": "queued", "to": …, "from": …}

Off (503, saying why) without EDGE_API_TOKEN or Twilio REST credentials: an API that places calls on
someone's bill must never be open by accident. The token is checked in constant time before the body is
even read, then the body is validated by a pydantic model (422 with the field and the reason). Variables
that steer the agent itself (`agent_id`, ElevenLabs' `system__` variables) are refused unless
EDGE_API_AGENT_OVERRIDES lists them: a token for placing calls must not also pick which agent (and so
which prompt, voice and tools) runs. The TwiML is inline (no webhook round trip) with status callbacks
for every call event.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Security
from fastapi.security import HTTPBearer
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from voicebridge.runtime.logs import call_context
from voicebridge.runtime.privacy import mask_number

from .config import (
    CALL_STATUS_PATH,
    CALLS_API_PATH,
    E164,
    EdgeSettings,
    agent_control_problem,
    variable_problem,
)
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


def _e164(value: str) -> str:
    if not E164.fullmatch(value):
        raise ValueError("must be an E.164 number like +15551234567")
    return value


E164Number = Annotated[
    str,
    AfterValidator(_e164),
    WithJsonSchema({"type": "string", "pattern": f"^{E164.pattern}$", "examples": ["+15551234567"]}),
]


class CallRequestBody(BaseModel):
    """The body of `POST /calls`; anything else (an unknown field, a non-string variable) is a 422."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    to: E164Number = Field(description="the number to call")
    from_: E164Number | None = Field(
        default=None, alias="from", description="the caller id (default: TWILIO_FROM_NUMBER)"
    )
    variables: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_VARIABLES,
        description="extra <Parameter>s for the agent (ElevenLabs: dynamic variables); not vb_*, "
        "not agent_id unless EDGE_API_AGENT_OVERRIDES allows it, never system__*",
    )

    @field_validator("variables")
    @classmethod
    def _usable_names(cls, variables: dict[str, str]) -> dict[str, str]:
        for name, value in variables.items():
            problem = variable_problem(name, value)
            if problem:
                raise ValueError(problem)
        return variables


class CallCreated(BaseModel):
    """201: the call Twilio queued."""

    call_sid: str = Field(examples=["CA0123456789abcdef0123456789abcdef"])
    status: str = Field(description="Twilio's status of the new call", examples=["queued"])
    to: str
    from_: str = Field(serialization_alias="from")


class ErrorDetail(BaseModel):
    """What went wrong; `field` names the body field a 422 is about."""

    error: str
    field: str | None = None
    twilio_status: int | None = Field(default=None, description="502: Twilio's HTTP status")
    twilio_code: int | None = Field(default=None, description="502: Twilio's error code")
    twilio_message: str | None = None


class ErrorBody(BaseModel):
    """Every error answer: `{"detail": {...}}` (413 and other framework errors: a string)."""

    detail: ErrorDetail | str


def _errors(*statuses: int) -> dict[int | str, dict[str, object]]:
    reasons = {
        400: "the body is not a JSON object",
        401: "no bearer token",
        403: "wrong bearer token",
        413: f"body over {MAX_BODY_BYTES} bytes",
        422: "a field is missing or invalid (not E.164, unknown, a reserved variable); `field` names it",
        502: "Twilio refused the call (with Twilio's status and code) or could not be reached",
        503: "the API is off: EDGE_API_TOKEN or the Twilio credentials are not set",
    }
    return {status: {"model": ErrorBody, "description": reasons[status]} for status in statuses}


# Documents the bearer scheme in the OpenAPI schema; the check itself is check_bearer (in constant
# time, before the body is read), so this never refuses anything on its own.
_BEARER = HTTPBearer(auto_error=False, scheme_name="EDGE_API_TOKEN", description="Bearer $EDGE_API_TOKEN")
# The body is read and validated by the handler (after the token check, bounded), so FastAPI does not
# see it as a parameter: its schema is given here.
_CALL_REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": CallRequestBody.model_json_schema(by_alias=True)}},
}


def _validation_error(exc: ValidationError) -> HTTPException:
    first = exc.errors(include_url=False)[0]
    if first["type"] in ("json_invalid", "model_type", "json_type") and not first["loc"]:
        return _error(400, "body must be a JSON object")
    where = ".".join(str(part) for part in first["loc"]) or "body"
    message = str(first["msg"]).removeprefix("Value error, ")
    return _error(422, f"`{where}`: {message}"[:300], field=where)


def parse_call_request(
    body: bytes, default_from: str | None, agent_overrides: frozenset[str] = frozenset()
) -> tuple[str, str, dict[str, str]]:
    """(to, from, variables) from the JSON body; raises 400/422 with what is wrong."""
    try:
        request = CallRequestBody.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    from_ = request.from_ or default_from
    if from_ is None:
        raise _error(422, "`from` is required (no TWILIO_FROM_NUMBER configured)", field="from")
    for name in request.variables:
        problem = agent_control_problem(name, agent_overrides)
        if problem:
            API_REQUESTS_REJECTED.labels("agent_override").inc()
            raise _error(422, problem, field=f"variables.{name}")
    return request.to, from_, request.variables


def router(settings: EdgeSettings, security: EdgeSecurity, rest: TwilioRest | None) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        CALLS_API_PATH,
        status_code=201,
        summary="Place an outbound call",
        response_model=CallCreated,
        responses=_errors(400, 401, 403, 413, 422, 502, 503),
        dependencies=[Security(_BEARER)],
        openapi_extra={"requestBody": _CALL_REQUEST_BODY},
    )
    async def place_call(request: Request) -> CallCreated:
        """Calls `to` from `from`; when answered, the call streams to the agent like an inbound one."""
        check_bearer(settings, request.headers.get("authorization"))
        if rest is None:
            API_REQUESTS_REJECTED.labels("no_rest").inc()
            raise _error(503, "outbound calls need TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN on the edge")
        raw = await read_body(request, MAX_BODY_BYTES)
        to, from_, variables = parse_call_request(
            raw, settings.twilio_from_number, settings.api_agent_overrides
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
            detail = str(exc).replace(to, mask_number(to))  # Twilio's messages can quote the numbers
            if from_:
                detail = detail.replace(from_, mask_number(from_))
            log.warning("outbound call to %s refused by Twilio: %s", mask_number(to), detail)
            raise _error(
                502,
                "Twilio refused the call",
                twilio_status=exc.status,
                twilio_code=exc.code,
                twilio_message=exc.message[:300],
            ) from None
        except Exception as exc:
            OUTBOUND_CALLS.labels("unreachable").inc()
            log.error("outbound call to %s failed: %s", mask_number(to), type(exc).__name__)
            raise _error(502, "Twilio could not be reached") from None
        OUTBOUND_CALLS.labels("created").inc()
        with call_context(created.sid):
            log.info(
                "outbound call placed to %s from %s (%s)", mask_number(to), mask_number(from_), created.status
            )
        return CallCreated(call_sid=created.sid, status=created.status, to=to, from_=from_)

    return routes
