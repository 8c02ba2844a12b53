"""Phone numbers as logs show them: masked but for the last digits (runtime/privacy.py)."""

from __future__ import annotations

import pytest

from voicebridge.runtime.privacy import end_detail, mask_number
from voicebridge.v1 import common_pb2


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+15551234567", "+1******4567"),
        ("+442071838750", "+4*******8750"),
        ("+8613800138000", "+8********8000"),
        ("15551234567", "*******4567"),
        ("+123456", "+******"),  # too short to keep anything
        ("12345", "*****"),
        ("266696687", "*****6687"),
        ("client:alice", "client:***"),
        ("sip:bob@example.com", "sip:***"),
        ("anonymous", "***"),
        ("+1 555 123 4567", "***"),  # not a number as Twilio sends them: nothing of it is kept
        ("+١٢٣٤٥٦٧٨٩٠", "***"),  # non-ASCII digits
        ("", "?"),
        (None, "?"),
    ],
)
def test_mask_number_keeps_only_the_last_four_digits(value: str | None, masked: str) -> None:
    assert mask_number(value) == masked


def test_masked_number_never_contains_the_hidden_digits() -> None:
    number = "+15559876543"
    masked = mask_number(number)
    assert masked.endswith("6543")
    assert "5559876" not in masked
    assert len(masked) == len(number)


def test_keep_is_configurable() -> None:
    assert mask_number("+15551234567", keep=2) == "+1********67"


@pytest.mark.parametrize(
    ("reason", "detail", "log_transcripts", "logged"),
    [
        (
            common_pb2.END_REASON_AGENT_ENDED,
            "caller said their PIN is 1234",
            False,
            "(reason withheld: LOG_TRANSCRIPTS)",
        ),
        (
            common_pb2.END_REASON_TRANSFERRED,
            "wants billing about card 4111",
            False,
            "(reason withheld: LOG_TRANSCRIPTS)",
        ),
        (common_pb2.END_REASON_AGENT_ENDED, "", False, ""),
        (common_pb2.END_REASON_AGENT_ENDED, "goodbye", True, "goodbye"),
        (common_pb2.END_REASON_CALLER_HANGUP, "twilio sent stop", False, "twilio sent stop"),
        (common_pb2.END_REASON_AGENT_ERROR, "1011 internal error", False, "1011 internal error"),
    ],
)
def test_an_end_detail_in_the_agents_words_is_logged_only_with_log_transcripts(
    reason: int, detail: str, log_transcripts: bool, logged: str
) -> None:
    assert end_detail(reason, detail, log_transcripts) == logged
