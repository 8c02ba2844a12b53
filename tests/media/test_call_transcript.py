"""What media tells a new agent session after the agent process died (call_transcript.py): final turns
only, agent replies as the caller heard them, the response floor."""

from __future__ import annotations

from voicebridge.media.call_transcript import MAX_TURNS, CallTranscript
from voicebridge.v1 import common_pb2

AGENT, CALLER = common_pb2.Transcript.ROLE_AGENT, common_pb2.Transcript.ROLE_CALLER


def _turn(role: int, text: str, rid: int = 0, *, final: bool = True, correction: bool = False):
    return common_pb2.Transcript(role=role, text=text, final=final, correction=correction, response_id=rid)


def _texts(transcript: CallTranscript, aligned=lambda rid: "") -> list[tuple[int, str]]:
    return [(t.role, t.text) for t in transcript.context(aligned).turns]


def test_final_turns_in_order_and_unheard_replies_left_out() -> None:
    t = CallTranscript()
    t.note(_turn(AGENT, "Hello.", 3))
    t.note_audio(3)
    t.note(_turn(CALLER, "Wher", final=False))  # tentative: not a turn
    t.note(_turn(CALLER, "Where is my parcel?"))
    t.note(_turn(AGENT, "Let me look.", 4))  # no audio of it arrived: never heard
    assert _texts(t) == [(AGENT, "Hello."), (CALLER, "Where is my parcel?")]
    assert t.context(lambda rid: "").response_floor == 3


def test_a_reply_counts_as_heard_cut_or_aligned() -> None:
    t = CallTranscript()
    t.note(_turn(AGENT, "Your parcel left Leeds on Monday.", 5))
    t.note_audio(5)
    t.note(_turn(AGENT, "It arrives on Friday at noon.", 6))
    t.note_audio(6)
    t.note_cut(5, "Your parcel left")
    texts = _texts(t, aligned=lambda rid: "It arrives" if rid == 6 else "")
    assert texts == [(AGENT, "Your parcel left"), (AGENT, "It arrives")]


def test_a_correction_replaces_its_replys_text() -> None:
    t = CallTranscript()
    t.note(_turn(AGENT, "Your parcel left Leeds on Monday.", 5))
    t.note_audio(5)
    t.note(_turn(AGENT, "Your parcel left", 5, correction=True))
    assert _texts(t) == [(AGENT, "Your parcel left")]


def test_only_the_newest_turns_are_kept() -> None:
    t = CallTranscript()
    for n in range(MAX_TURNS + 10):
        t.note(_turn(CALLER, f"line {n}"))
    texts = _texts(t)
    assert len(texts) == MAX_TURNS
    assert texts[-1] == (CALLER, f"line {MAX_TURNS + 9}")
