"""Call status callbacks are applied in SequenceNumber order and terminal statuses are final."""

import pytest

from voicebridge.edge.twilio.status_callbacks import CallStatusEvent, CallStatusTracker, parse_status_callback


def _ev(seq: int, status: str, sid: str = "CA1") -> CallStatusEvent:
    return CallStatusEvent(call_sid=sid, status=status, sequence_number=seq)


def test_parse_reads_twilio_fields() -> None:
    form = {
        "CallSid": "CA1",
        "CallStatus": "completed",
        "SequenceNumber": "3",
        "CallDuration": "42",
        "AnsweredBy": "human",
        "CallbackSource": "call-progress-events",
    }
    assert parse_status_callback(form) == CallStatusEvent("CA1", "completed", 3, 42, "human")


@pytest.mark.parametrize(
    ("form", "match"),
    [
        ({"CallStatus": "ringing", "SequenceNumber": "0"}, "CallSid"),
        ({"CallSid": "CA1", "CallStatus": "dancing", "SequenceNumber": "0"}, "CallStatus"),
        ({"CallSid": "CA1", "CallStatus": "ringing"}, "SequenceNumber"),
        ({"CallSid": "CA1", "CallStatus": "ringing", "SequenceNumber": "-1"}, "SequenceNumber"),
    ],
)
def test_parse_rejects_incomplete_callbacks(form: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_status_callback(form)


@pytest.mark.parametrize(
    ("arrivals", "applied", "final"),
    [
        ([(0, "initiated"), (1, "ringing"), (2, "in-progress"), (3, "completed")], [0, 1, 2, 3], "completed"),
        ([(0, "initiated"), (2, "in-progress"), (1, "ringing"), (3, "completed")], [0, 2, 3], "completed"),
        ([(3, "completed"), (2, "in-progress"), (1, "ringing")], [3], "completed"),
        ([(1, "ringing"), (1, "ringing"), (0, "initiated")], [1], "ringing"),
        ([(0, "initiated"), (1, "busy"), (2, "in-progress")], [0, 1], "busy"),
        ([(0, "ringing"), (1, "no-answer")], [0, 1], "no-answer"),
    ],
    ids=["in-order", "ringing-late", "terminal-first", "duplicate", "after-terminal", "no-answer"],
)
def test_tracker_orders_by_sequence_and_terminal_is_final(
    arrivals: list[tuple[int, str]], applied: list[int], final: str
) -> None:
    tracker = CallStatusTracker()
    got = [e.sequence_number for seq, status in arrivals if (e := tracker.apply(_ev(seq, status)))]
    assert got == applied
    assert tracker.status("CA1").status == final


def test_tracker_keeps_calls_apart_and_forgets() -> None:
    tracker = CallStatusTracker()
    tracker.apply(_ev(5, "completed", "CA1"))
    assert tracker.apply(_ev(0, "ringing", "CA2")) is not None
    assert tracker.status("CA2").status == "ringing"
    tracker.forget("CA1")
    assert tracker.status("CA1") is None


def test_terminal_flag() -> None:
    assert all(_ev(0, s).terminal for s in ("completed", "busy", "failed", "no-answer", "canceled"))
    assert not any(_ev(0, s).terminal for s in ("queued", "initiated", "ringing", "in-progress"))
