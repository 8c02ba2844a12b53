"""ReplyTracker: reply boundaries from ElevenLabs events, whether audio ids count replies or chunks."""

from __future__ import annotations

import pytest

from voicebridge.agent.backends.elevenlabs.replies import ReplyTracker

MODES = ["per_reply", "per_chunk"]


class Ids:
    """The server's audio event ids in either numbering: one per reply, or one per chunk."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.last = 0

    def reply(self, chunks: int) -> list[int]:
        if self.mode == "per_reply":
            self.last += 1
            return [self.last] * chunks
        ids = list(range(self.last + 1, self.last + 1 + chunks))
        self.last = ids[-1]
        return ids


def feed(tracker: ReplyTracker, ids: list[int]) -> list[int | None]:
    return [tracker.audio(i) for i in ids]


@pytest.mark.parametrize("mode", MODES)
def test_a_reply_s_chunks_share_one_reply_id_and_the_next_reply_gets_a_larger_one(mode: str) -> None:
    ids, tracker = Ids(mode), ReplyTracker()
    tracker.agent_response(None)
    first = feed(tracker, ids.reply(4))
    tracker.user_turn()
    tracker.agent_response(None)
    second = feed(tracker, ids.reply(3))
    assert len(set(first)) == 1
    assert len(set(second)) == 1
    assert first[0] is not None
    assert second[0] is not None
    assert second[0] > first[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text_first", [True, False], ids=["text-then-audio", "audio-then-text"])
def test_agent_response_on_either_side_of_the_first_chunk_opens_one_reply(
    mode: str, text_first: bool
) -> None:
    ids, tracker = Ids(mode), ReplyTracker()
    got: list[int | None] = []
    for n in range(3):
        chunks = ids.reply(3)
        if text_first:  # replies in a row with no caller turn between them (e.g. after a tool call)
            text_rid = tracker.agent_response(None)
            got += feed(tracker, chunks)
        else:  # text just after the first chunk: the caller's turn is what opens the reply
            tracker.user_turn()
            got += feed(tracker, chunks[:1])
            text_rid = tracker.agent_response(None)
            got += feed(tracker, chunks[1:])
        assert set(got[3 * n :]) == {text_rid}


@pytest.mark.parametrize("mode", MODES)
def test_after_a_local_barge_in_the_rest_of_the_reply_is_void_and_the_next_reply_plays(mode: str) -> None:
    ids, tracker = Ids(mode), ReplyTracker()
    tracker.agent_response(None)
    chunks = ids.reply(10)
    heard = feed(tracker, chunks[:4])
    rid = heard[0]
    assert rid is not None
    assert tracker.caller_interrupted(rid) >= rid
    assert feed(tracker, chunks[4:]) == [None] * 6  # the server goes on streaming the cut-off reply
    tracker.user_turn()  # the caller's words, transcribed
    tracker.agent_response(None)
    answer = feed(tracker, ids.reply(3))
    assert None not in answer
    assert answer[0] > rid


@pytest.mark.parametrize("mode", MODES)
def test_a_local_barge_in_also_voids_a_later_reply_already_streaming(mode: str) -> None:
    """Media cleared everything it had; a reply that had begun arriving must not play its tail."""
    ids, tracker = Ids(mode), ReplyTracker()
    first = feed(tracker, ids.reply(2))[0]
    tracker.agent_response(None)
    tracker.agent_response(None)  # a second reply's text: the first already had none, now it does
    second = feed(tracker, ids.reply(2))
    assert second[0] is not None
    assert first is not None
    assert second[0] > first
    tracker.caller_interrupted(first)
    assert feed(tracker, ids.reply(1) if mode == "per_chunk" else [ids.last]) == [None]


@pytest.mark.parametrize("mode", MODES)
def test_a_local_barge_in_does_not_void_an_answer_whose_text_came_before_its_audio(mode: str) -> None:
    ids, tracker = Ids(mode), ReplyTracker()
    tracker.agent_response(None)
    rid = feed(tracker, ids.reply(2))[0]
    assert rid is not None
    tracker.user_turn()
    tracker.agent_response(None)  # the answer's text; media's CallerInterrupted races in after it
    tracker.caller_interrupted(rid)
    assert None not in feed(tracker, ids.reply(2))


@pytest.mark.parametrize("mode", MODES)
def test_server_interruption_voids_the_open_reply_and_older_chunk_ids(mode: str) -> None:
    ids, tracker = Ids(mode), ReplyTracker()
    tracker.agent_response(None)
    chunks = ids.reply(5)
    rid = feed(tracker, chunks[:3])[0]
    assert tracker.server_interruption(chunks[2]) == rid
    assert tracker.audio(chunks[2]) is None  # a late chunk with the interrupted id
    later = feed(tracker, ids.reply(2))
    assert None not in later
    assert later[0] > rid


def test_per_reply_ids_mark_a_boundary_even_without_text_or_turn() -> None:
    tracker = ReplyTracker()
    first = feed(tracker, [5, 5, 5])
    second = feed(tracker, [7, 7])
    assert first == [5, 5, 5]
    assert second == [7, 7]


def test_reply_ids_follow_the_server_s_first_chunk_id_and_never_decrease() -> None:
    tracker = ReplyTracker()
    assert tracker.agent_response(9) == 9
    assert feed(tracker, [9, 9]) == [9, 9]
    tracker.user_turn()  # a caller's word mid-reply ("mhm"), not an interruption
    assert feed(tracker, [9]) == [9]  # the same id: still that reply
    assert feed(tracker, [10]) == [10]
    assert tracker.next_reply() == 11  # the bridge's own apology: above every id seen
    tracker.agent_response(None)
    assert feed(tracker, [11]) == [12]  # a server id that is not above the last reply is raised
