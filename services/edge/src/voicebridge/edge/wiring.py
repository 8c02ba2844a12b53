"""Builds the edge app from settings: the Twilio REST client and the signature checks, when configured."""

from __future__ import annotations

from fastapi import FastAPI

from . import calls_api, webhooks
from .app import create_app
from .call_status import BoundedCallStatus
from .config import EdgeSettings
from .security import EdgeSecurity
from .stream_action import EndedCalls
from .twilio.rest import TwilioRest
from .twilio_actions import RestCallControl


def build_app(settings: EdgeSettings) -> FastAPI:
    security = EdgeSecurity(settings)
    rest = (
        TwilioRest(
            settings.twilio_account_sid or "",
            settings.twilio_auth_token or "",
            base_url=settings.twilio_api_base_url,
        )
        if settings.rest_configured
        else None
    )
    ended = EndedCalls()  # the calls this edge ended on purpose: their stream action answers <Hangup/>
    return create_app(
        settings,
        rest=RestCallControl(rest, caller_id=settings.twilio_from_number) if rest else None,
        verify_upgrade=security.verify_upgrade,
        verify_start=security.verify_start,
        routers=(
            webhooks.router(settings, security, BoundedCallStatus(), ended),
            calls_api.router(settings, security, rest),
        ),
        on_shutdown=(rest.close,) if rest else (),
        ended_calls=ended,
    )
