"""Call control the agent asks for (hang up, transfer), carried out on the Twilio REST API.

Media sends HangUp/TransferCall only once the agent's last words have played (their mark came back),
so acting at once is right. A hang-up is `Status=completed`; 404/20404 means the call had already
ended, which is what we wanted. A transfer replaces the call's TwiML with `<Dial>`, which also ends the
stream. Transfers go only to configured destinations (EDGE_TRANSFER_DESTINATIONS): an agent talked
into dialling a premium number is toll fraud.

Every transfer has a `TransferResult`, which the edge sends back to media (and media to the agent): a
refused or failed transfer is never reported as done, and the call then goes on with the agent, which
can tell the caller. Without REST credentials (local development) a hang-up is just the WebSocket
closing, which our TwiML's action answers with <Hangup/>; a transfer cannot happen and says so.

Every call this edge hangs up or transfers goes into `ended` first (before Twilio closes the stream),
so the `<Connect action>` request that follows is answered <Hangup/>, not a re-opened stream
(stream_action.py).
"""

from __future__ import annotations

import logging
from typing import Protocol

from voicebridge.runtime.privacy import mask_number
from voicebridge.v1 import common_pb2

from .config import E164
from .metrics import HANGUPS
from .stream_action import EndedCalls
from .twilio import twiml
from .twilio.rest import CallNotFound, TwilioRest

log = logging.getLogger(__name__)


class CallControl(Protocol):
    async def hang_up(self, call_sid: str) -> bool:
        """True if the call was ended now, False if it had already ended."""
        ...

    async def transfer(self, call_sid: str, destination: str) -> bool: ...


class RestCallControl:
    """CallControl on TwilioRest: hang-up by status, transfer by replacing the TwiML with <Dial>."""

    def __init__(self, rest: TwilioRest, caller_id: str | None = None) -> None:
        self._rest = rest
        self._caller_id = caller_id

    async def hang_up(self, call_sid: str) -> bool:
        return await self._rest.hangup(call_sid)

    async def transfer(self, call_sid: str, destination: str) -> bool:
        await self._rest.transfer(call_sid, twiml.dial(destination, caller_id=self._caller_id))
        return True


def transfer_allowed(destination: str, allowed: frozenset[str]) -> bool:
    """A well-formed E.164 number or sip: URI that is listed (or "*" is)."""
    well_formed = bool(E164.fullmatch(destination)) or destination.startswith(("sip:", "sips:"))
    return well_formed and ("*" in allowed or destination in allowed)


class TwilioActions:
    def __init__(
        self,
        rest: CallControl | None,
        transfer_destinations: frozenset[str] = frozenset(),
        ended: EndedCalls | None = None,
    ) -> None:
        self._rest = rest
        self._allowed = transfer_destinations
        self.ended = EndedCalls() if ended is None else ended  # calls this edge ended on purpose

    async def hang_up(self, call_sid: str) -> None:
        self.ended.add(call_sid)
        if self._rest is None:
            HANGUPS.labels("hangup", "websocket_only").inc()
            return
        try:
            ended_now = await self._rest.hang_up(call_sid)
        except Exception:
            HANGUPS.labels("hangup", "error").inc()
            log.exception("REST hang-up failed; closing the stream instead")
            return
        HANGUPS.labels("hangup", "ok" if ended_now else "already_ended").inc()
        log.info("hung up through the REST API" if ended_now else "call had already ended (20404)")

    async def transfer(self, call_sid: str, destination: str) -> common_pb2.TransferResult:
        """Transfer the call if allowed; returns what happened, in words the agent can act on."""

        def failed(detail: str) -> common_pb2.TransferResult:
            return common_pb2.TransferResult(destination=destination, transferred=False, detail=detail)

        shown = mask_number(destination[:60])
        if self._rest is None:
            HANGUPS.labels("transfer", "unavailable").inc()
            log.error("cannot transfer to %s: no Twilio REST credentials configured", shown)
            return failed("transfers are not available on this line")
        if not transfer_allowed(destination, self._allowed):
            HANGUPS.labels("transfer", "refused").inc()
            log.warning("transfer to %s refused (not in EDGE_TRANSFER_DESTINATIONS); the call goes on", shown)
            return failed("destination not allowed")
        self.ended.add(call_sid)  # kept on a failed transfer: the call then ends here or goes on here
        try:
            await self._rest.transfer(call_sid, destination)
        except CallNotFound:
            HANGUPS.labels("transfer", "already_ended").inc()
            log.info("cannot transfer: the call had already ended (20404)")
            return failed("the call has already ended")
        except Exception as exc:  # Twilio's message can quote the number: masked, no traceback
            HANGUPS.labels("transfer", "error").inc()
            log.error("REST transfer to %s failed: %s", shown, str(exc).replace(destination, shown))
            return failed("the telephone network could not transfer the call")
        HANGUPS.labels("transfer", "ok").inc()
        log.info("transferred to %s", shown)
        return common_pb2.TransferResult(destination=destination, transferred=True)
