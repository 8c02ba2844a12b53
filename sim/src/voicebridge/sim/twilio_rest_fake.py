"""A fake Twilio REST API (Calls resource only) on real HTTP, for driving the real twilio-python Client.

Point a client at it with ``client.api.base_url = fake.base_url`` (and ``environment={}``). It records every
request and answers like Twilio (https://www.twilio.com/docs/voice/api/call-resource):

- ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` → 201 with a new ``CA…`` sid, status ``queued``;
  400 with 21201/21213 (no To/From) or 21200 (no Url/Twiml/ApplicationSid), 21205 for a bad Url.
- ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` (``Status``, ``Twiml``, ``Url``) → 200,
  or 404 code 20404 for an unknown or already ended call; a ``Status`` other than completed/canceled → 400.
- ``GET`` of the same call → 200 with its current status, or 404/20404.
- HTTP Basic auth with the account's SID and Auth Token, else 401 code 20003.

Like Twilio, it can POST a call's status callbacks (:meth:`TwilioRestFake.send_status_callbacks`), signed
with the account's Auth Token over the StatusCallback URL, in whatever order a test chooses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["FakeCall", "RecordedRequest", "TwilioRestFake"]

API = "/2010-04-01"
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    form: list[tuple[str, str]]
    auth: tuple[str, str] | None
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic())

    def field(self, name: str) -> str | None:
        return next((v for k, v in self.form if k == name), None)

    def fields(self, name: str) -> list[str]:
        return [v for k, v in self.form if k == name]


@dataclass
class FakeCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    status: str = "queued"
    twiml: str | None = None
    url: str | None = None
    status_callback: str | None = None
    status_callback_events: list[str] = field(default_factory=list)
    updates: list[dict[str, str]] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "status": self.status,
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "uri": f"{API}/Accounts/{self.account_sid}/Calls/{self.sid}.json",
        }


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class TwilioRestFake:
    """``async with TwilioRestFake({"AC…": "token"}) as fake:`` serves on 127.0.0.1 at ``fake.base_url``."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = dict(accounts)
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, FakeCall] = {}
        self.base_url = ""
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        # Runs after a call update (hang-up, new TwiML) has landed: real Twilio ends the call's media
        # stream then, so a simulation closes the stream's socket here.
        self.on_update: Callable[[str, dict[str, str]], None] | None = None

    async def __aenter__(self) -> TwilioRestFake:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("fake Twilio REST server exited during start-up")
            await asyncio.sleep(0.005)  # uvicorn exposes no start-up event
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    def end_call(self, call_sid: str, status: str = "completed") -> None:
        """The far end hung up (or the call failed): later updates get 404/20404."""
        self.calls[call_sid].status = status

    def answer_call(self, call_sid: str) -> None:
        self.calls[call_sid].status = "in-progress"

    async def send_status_callbacks(
        self,
        call_sid: str,
        statuses: Sequence[tuple[int, str]],
        *,
        deliver_to: str | None = None,
        duration_s: int = 7,
    ) -> list[int]:
        """POST ``(SequenceNumber, CallStatus)`` callbacks to the call's StatusCallback, in the order given.

        Signed like Twilio (X-Twilio-Signature over the StatusCallback URL and every form field).
        ``deliver_to`` (``http://127.0.0.1:PORT``) replaces the URL's scheme and host on the wire only,
        as a reverse proxy would. Returns the HTTP status of each POST.
        """
        from twilio.request_validator import RequestValidator

        call = self.calls[call_sid]
        if not call.status_callback:
            raise ValueError(f"call {call_sid} has no StatusCallback")
        signer = RequestValidator(self.accounts[call.account_sid])
        url = call.status_callback
        target = url
        if deliver_to:
            parts, base = urlsplit(url), urlsplit(deliver_to)
            target = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        codes = []
        async with httpx.AsyncClient(timeout=5) as client:
            for seq, status in statuses:
                form = {
                    "AccountSid": call.account_sid,
                    "ApiVersion": "2010-04-01",
                    "CallSid": call.sid,
                    "CallStatus": status,
                    "Called": call.to,
                    "Caller": call.from_,
                    "CallbackSource": "call-progress-events",
                    "Direction": "outbound-api",
                    "From": call.from_,
                    "SequenceNumber": str(seq),
                    "Timestamp": formatdate(usegmt=True),
                    "To": call.to,
                }
                if status == "completed":
                    form["CallDuration"] = str(duration_s)
                headers = {"X-Twilio-Signature": signer.compute_signature(url, form)}
                reply = await client.post(target, data=form, headers=headers)
                codes.append(reply.status_code)
        return codes

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        async def record(request: Request) -> tuple[RecordedRequest, str | None]:
            body = (await request.body()).decode("utf-8", "replace")
            form = parse_qsl(body, keep_blank_values=True)
            auth = _basic_auth(request.headers.get("authorization"))
            rec = RecordedRequest(request.method, request.url.path, form, auth)
            self.requests.append(rec)
            account = request.path_params["account_sid"]
            if auth is None or self.accounts.get(auth[0]) != auth[1] or auth[0] != account:
                return rec, "auth"
            return rec, None

        @app.post(API + "/Accounts/{account_sid}/Calls.json")
        async def create(request: Request, account_sid: str) -> JSONResponse:
            rec, problem = await record(request)
            if problem:
                return _error(401, 20003, "Authenticate")
            to, from_ = rec.field("To"), rec.field("From")
            if not to:
                return _error(400, 21201, "No 'To' number is specified")
            if not from_:
                return _error(400, 21213, "No 'From' number is specified")
            twiml, url, app_sid = rec.field("Twiml"), rec.field("Url"), rec.field("ApplicationSid")
            if not (twiml or url or app_sid):
                return _error(400, 21200, "Url, Twiml or ApplicationSid is required")
            if url and urlsplit(url).scheme not in ("http", "https"):
                return _error(400, 21205, f"Url is not a valid URL: {url}")
            call = FakeCall(
                sid="CA" + secrets.token_hex(16),
                account_sid=account_sid,
                to=to,
                from_=from_,
                twiml=twiml,
                url=url,
                status_callback=rec.field("StatusCallback"),
                status_callback_events=rec.fields("StatusCallbackEvent"),
            )
            self.calls[call.sid] = call
            return JSONResponse(call.resource(), status_code=201)

        def not_found(account_sid: str, call_sid: str) -> JSONResponse:
            path = f"{API}/Accounts/{account_sid}/Calls/{call_sid}.json"
            return _error(404, 20404, f"The requested resource {path} was not found")

        @app.post(API + "/Accounts/{account_sid}/Calls/{call_sid}.json")
        async def update(request: Request, account_sid: str, call_sid: str) -> JSONResponse:
            rec, problem = await record(request)
            if problem:
                return _error(401, 20003, "Authenticate")
            call = self.calls.get(call_sid)
            if call is None or call.account_sid != account_sid or call.status in ENDED:
                return not_found(account_sid, call_sid)
            fields = dict(rec.form)
            call.updates.append(fields)
            status = fields.get("Status")
            if status is not None:
                if status not in ("completed", "canceled"):  # the only values UpdateStatus allows
                    return _error(400, 20001, f"Invalid Status {status!r}")
                if status == "completed":
                    call.status = "completed"
                elif call.status in ("queued", "ringing"):  # canceled "has no affect on in-progress calls"
                    call.status = "canceled"
            if "Twiml" in fields:
                call.twiml = fields["Twiml"]
            if "Url" in fields:
                call.url = fields["Url"]
            if self.on_update is not None:
                self.on_update(call_sid, fields)
            return JSONResponse(call.resource())

        @app.get(API + "/Accounts/{account_sid}/Calls/{call_sid}.json")
        async def fetch(request: Request, account_sid: str, call_sid: str) -> JSONResponse:
            _, problem = await record(request)
            if problem:
                return _error(401, 20003, "Authenticate")
            call = self.calls.get(call_sid)
            if call is None or call.account_sid != account_sid:
                return not_found(account_sid, call_sid)
            return JSONResponse(call.resource())

        return app
