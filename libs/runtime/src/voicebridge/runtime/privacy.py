"""Personal data in logs: phone numbers masked by default, conversation text only when asked for.

A phone number is personal data. Logs keep only its last digits (enough for support to match a
complaint to a call; the full number is in Twilio's own call log) and the leading digit of an E.164
country code: `+15551234567` → `+1******4567`. Transcripts and DTMF digits (PINs, card numbers) are
logged only when the operator sets LOG_TRANSCRIPTS=true (see docs/edge.md).
"""

from __future__ import annotations

from voicebridge.v1 import common_pb2

KEEP_DIGITS = 4
MASK_CHAR = "*"


def mask_number(value: str | None, keep: int = KEEP_DIGITS) -> str:
    """`value` (a phone number, or whatever Twilio put in From/To) with all but its last `keep` digits
    masked. Numbers too short to hide anything behind `keep` digits lose all of them; anything that is
    not a number (a `client:` or `sip:` address) keeps only its scheme."""
    if not value:
        return "?"
    plus = value.startswith("+")
    digits = value[1:] if plus else value
    if not digits.isascii() or not digits.isdigit():
        scheme, sep, _ = value.partition(":")
        return f"{scheme}:{MASK_CHAR * 3}" if sep and scheme.isalpha() else MASK_CHAR * 3
    if len(digits) <= keep + 2:  # a short code or a truncated number: nothing safe to keep
        return ("+" if plus else "") + MASK_CHAR * len(digits)
    head = digits[0] if plus else ""  # the country code's first digit (+1 North America, +4 Europe...)
    hidden = len(digits) - keep - len(head)
    return ("+" if plus else "") + head + MASK_CHAR * hidden + digits[-keep:]


# Ends whose detail is the agent's own free text (the reason an LLM gave end_call or a transfer),
# which can repeat what the caller said.
AGENT_WORDED_ENDS = frozenset({common_pb2.END_REASON_AGENT_ENDED, common_pb2.END_REASON_TRANSFERRED})


def end_detail(reason: int, detail: str, log_transcripts: bool = False) -> str:
    """A call end's detail as it may be logged: withheld when it is the agent's words, unless
    LOG_TRANSCRIPTS allows conversation text in logs."""
    if reason in AGENT_WORDED_ENDS and not log_transcripts:
        return "(reason withheld: LOG_TRANSCRIPTS)" if detail else ""
    return detail
