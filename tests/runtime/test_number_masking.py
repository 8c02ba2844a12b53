"""Phone numbers as logs show them: masked but for the last digits (runtime/privacy.py)."""

from __future__ import annotations

import pytest

from voicebridge.runtime.privacy import mask_number


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
