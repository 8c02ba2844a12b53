"""Call control the agent asks for (hang up, transfer), carried out on the Twilio REST API.

Without REST credentials (local development) a hang-up is just the WebSocket closing, which our
TwiML turns into <Hangup/>; a transfer cannot happen and is logged as such.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .metrics import HANGUPS

log = logging.getLogger(__name__)


class CallControl(Protocol):
    async def hang_up(self, call_sid: str) -> bool: ...

    async def transfer(self, call_sid: str, destination: str) -> bool: ...


class TwilioActions:
    def __init__(self, rest: CallControl | None) -> None:
        self._rest = rest

    async def hang_up(self, call_sid: str) -> None:
        if self._rest is None:
            HANGUPS.labels("hangup", "websocket_only").inc()
            return
        try:
            await self._rest.hang_up(call_sid)
            HANGUPS.labels("hangup", "ok").inc()
        except Exception:
            HANGUPS.labels("hangup", "error").inc()
            log.exception("REST hang-up failed; closing the stream instead")

    async def transfer(self, call_sid: str, destination: str) -> None:
        if self._rest is None:
            HANGUPS.labels("transfer", "unavailable").inc()
            log.error("cannot transfer to %s: no Twilio REST credentials configured", destination)
            return
        try:
            await self._rest.transfer(call_sid, destination)
            HANGUPS.labels("transfer", "ok").inc()
        except Exception:
            HANGUPS.labels("transfer", "error").inc()
            log.exception("REST transfer failed")
