"""Twilio REST calls the bridge makes (outbound call, hang up, transfer), awaitable from asyncio.

Choice: twilio-python's sync ``Client`` run in a small dedicated thread pool, not ``AsyncTwilioHttpClient``
(aiohttp, which twilio installs anyway): these are rare control-plane requests (a few per call), where a
thread hop costs nothing that matters, and the sync ``TwilioHttpClient`` pools connections through
``requests``. The pool also bounds how many REST requests run at once. ``create`` is never retried: a
retried POST can place a second call.

``TWILIO_REGION``/``TWILIO_EDGE`` in the process environment must not rewrite the API host (they even mangle
a local base URL into ``127.ie1.0.1``: docs/twilio.md#rest-api). ``environment={}`` is NOT enough: twilio
9.13 does ``environment = environment or os.environ`` and an empty dict is falsy (checked here, see
tests/sim/test_twilio_rest_fake.py). So the Client gets a non-empty mapping without those keys, and
``edge``/``region`` are cleared after construction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

__all__ = ["ALL_CALL_EVENTS", "CallCreated", "CallNotFound", "TwilioApiError", "TwilioRest"]

ALL_CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
CALL_NOT_FOUND = 20404
# Non-empty on purpose: Client falls back to os.environ when given a falsy mapping.
_NO_ENVIRONMENT = {"VOICEBRIDGE_TWILIO_ENVIRONMENT": "explicit"}

T = TypeVar("T")


class TwilioApiError(Exception):
    """Twilio refused a request (``status`` is HTTP, ``code`` is Twilio's error code when given)."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"Twilio API error {status} (code {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class CallNotFound(TwilioApiError):
    """The call does not exist or has already ended (HTTP 404 / code 20404)."""


@dataclass(frozen=True, slots=True)
class CallCreated:
    sid: str
    status: str


def _wrap(exc: TwilioRestException) -> TwilioApiError:
    status = int(exc.status or 0)
    code = exc.code if isinstance(exc.code, int) else None
    cls = CallNotFound if status == 404 or code == CALL_NOT_FOUND else TwilioApiError
    return cls(status, code, str(exc.msg))


class TwilioRest:
    """The three REST operations of the bridge, for one account."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        max_concurrency: int = 8,
    ) -> None:
        """``base_url`` (e.g. ``http://127.0.0.1:PORT``) replaces ``https://api.twilio.com`` (fakes)."""
        self._client = Client(
            account_sid,
            auth_token,
            environment=_NO_ENVIRONMENT,
            http_client=TwilioHttpClient(timeout=timeout_s),
        )
        self._client.edge = None
        self._client.region = None
        if base_url:
            self._client.api.base_url = base_url.rstrip("/")
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="twilio-rest")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))
        except TwilioRestException as exc:
            raise _wrap(exc) from None

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        twiml: str,
        status_callback: str | None = None,
        status_callback_events: Sequence[str] = ALL_CALL_EVENTS,
        ring_timeout_s: int | None = None,
        time_limit_s: int | None = None,
        machine_detection: str | None = None,
    ) -> CallCreated:
        """Place an outbound call that runs ``twiml`` when answered (inline, so no webhook round trip)."""
        kwargs: dict[str, Any] = {"to": to, "from_": from_, "twiml": twiml}
        if status_callback:
            kwargs |= {
                "status_callback": status_callback,
                "status_callback_method": "POST",
                "status_callback_event": list(status_callback_events),
            }
        if ring_timeout_s is not None:
            kwargs["timeout"] = ring_timeout_s
        if time_limit_s is not None:
            kwargs["time_limit"] = time_limit_s
        if machine_detection is not None:
            kwargs["machine_detection"] = machine_detection
        call = await self._run(self._client.calls.create, **kwargs)
        return CallCreated(sid=call.sid or "", status=str(call.status or ""))

    async def hangup(self, call_sid: str) -> bool:
        """End a call: True if Twilio ended it now, False if it had already ended (404/20404 is success)."""
        try:
            await self._run(self._client.calls(call_sid).update, status="completed")
        except CallNotFound:
            return False
        return True

    async def transfer(self, call_sid: str, twiml: str) -> None:
        """Replace the running TwiML (this ends the media stream) with e.g. a ``<Dial>``.

        Raises :class:`CallNotFound` if the call is already over.
        """
        await self._run(self._client.calls(call_sid).update, twiml=twiml)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
