"""Stamped agent audio (sim/stamped_audio.py): what the caller heard, aligned byte by byte to the
replies, finds a stretch heard twice, a stretch skipped, and a pause inside a reply."""

from __future__ import annotations

from voicebridge.sim.stamped_audio import WINDOW, Replies, stamped

A, B = stamped(1, 4000), stamped(2, 3200)
REPLIES = Replies({"a": A, "b": B})
GAP = b"\xff" * 800  # 100 ms of nothing playing


def test_every_reply_is_its_own_and_never_silence() -> None:
    assert stamped(1, 4000) == A != stamped(3, 4000)
    assert 0xFF not in A
    assert 0x7F not in A


def test_audio_heard_once_each_counts_once_with_no_stall() -> None:
    heard = REPLIES.align(GAP + A + GAP + B)
    assert [(r.reply, r.offset, r.length) for r in heard.runs] == [("a", 0, 4000), ("b", 0, 3200)]
    assert heard.repeated_bytes() == 0
    assert (heard.distinct_bytes("a"), heard.distinct_bytes("b")) == (4000, 3200)
    assert heard.stalls() == []


def test_a_stretch_replayed_after_a_pause_is_heard_twice() -> None:
    heard = REPLIES.align(A[:2000] + GAP + A[1040:])  # 120 ms replayed
    assert heard.repeated_bytes() == 960
    assert heard.times_heard("a") == 2
    assert heard.stalls() == []  # not a pause in the reply: a repeat


def test_a_stretch_skipped_is_missing_and_a_clean_pause_is_a_stall() -> None:
    skipped = REPLIES.align(A[:2000] + A[2640:])  # 80 ms never heard
    assert skipped.distinct_bytes("a") == 4000 - 640
    assert skipped.repeated_bytes() == 0
    paused = REPLIES.align(A[:2000] + GAP + A[2000:])
    assert paused.distinct_bytes("a") == 4000
    assert paused.stalls() == [(2000, len(GAP))]


def test_prompts_and_silence_around_the_replies_are_ignored() -> None:
    prompt = bytes(range(0x10, 0x30)) * 50
    heard = REPLIES.align(prompt + B[: WINDOW - 1] + GAP + A)
    assert [r.reply for r in heard.runs] == ["a"]  # a fragment shorter than the window is not found
    assert heard.distinct_bytes("b") == 0
