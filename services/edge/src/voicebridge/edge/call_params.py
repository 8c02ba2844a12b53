"""The <Parameter>s voicebridge itself puts on a stream, and how a Twilio `start` becomes a CallInfo.

Twilio's `start` message carries no phone numbers, so the voice webhook (which sees From/To) passes
them as stream parameters, next to a per-call token. These names are reserved; every other custom
parameter is the business's own and is handed to the agent untouched.
"""

from __future__ import annotations

from voicebridge.v1 import common_pb2

TOKEN = "vb_token"  # noqa: S105 - a parameter name, not a secret
FROM = "vb_from"
TO = "vb_to"
DIRECTION = "vb_direction"
# On a stream the edge re-opened for a call whose earlier stream broke (its edge died): the attempt
# number, from 1 (docs/failover.md#edge-dies). Media then reclaims the call's held conversation.
REOPEN = "vb_reopen"
RESERVED = frozenset({TOKEN, FROM, TO, DIRECTION, REOPEN})

_DIRECTIONS = {
    "inbound": common_pb2.CALL_DIRECTION_INBOUND,
    "outbound": common_pb2.CALL_DIRECTION_OUTBOUND,
}


def call_info(
    *, call_sid: str, stream_sid: str, account_sid: str, custom_parameters: dict[str, str]
) -> common_pb2.CallInfo:
    """The call as the media and agent services see it; the stream token never leaves the edge."""
    return common_pb2.CallInfo(
        call_sid=call_sid,
        stream_sid=stream_sid,
        account_sid=account_sid,
        from_number=custom_parameters.get(FROM, ""),
        to_number=custom_parameters.get(TO, ""),
        direction=_DIRECTIONS.get(
            custom_parameters.get(DIRECTION, ""), common_pb2.CALL_DIRECTION_UNSPECIFIED
        ),
        custom_parameters={k: v for k, v in custom_parameters.items() if k not in RESERVED},
    )
