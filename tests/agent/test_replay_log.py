"""ReplayLog: what a resume at a point sends, byte for byte, and how the log stays bounded."""

from __future__ import annotations

import pytest

from voicebridge.agent.replay_log import Point, ReplayLog, us_to_bytes
from voicebridge.v1 import agent_pb2, common_pb2

ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
PCM16 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)
PCM22 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=22050)


def audio(rid: int, data: bytes) -> agent_pb2.ConverseResponse:
    return agent_pb2.ConverseResponse(audio=agent_pb2.AudioChunk(data=data, format=ULAW, response_id=rid))


def transcript(rid: int) -> agent_pb2.ConverseResponse:
    return agent_pb2.ConverseResponse(
        transcript=common_pb2.Transcript(role=common_pb2.Transcript.ROLE_AGENT, text="x", response_id=rid)
    )


def _log(*messages: agent_pb2.ConverseResponse, max_audio_s: float = 60.0) -> ReplayLog:
    log = ReplayLog(ULAW, max_audio_s)
    for message in messages:
        log.note(message)
    return log


def _summary(replay: list) -> list[tuple[str, int, bytes]]:
    return [
        (m.WhichOneof("event"), m.audio.response_id if m.HasField("audio") else 0, m.audio.data)
        for m, _ in replay
    ]


# Reply 1: "aaaa" + "bbbb"; reply 2's transcript, then "cccc" + "dd".
LOG = (audio(1, b"aaaa"), audio(1, b"bbbb"), transcript(2), audio(2, b"cccc"), audio(2, b"dd"))


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        (
            Point(0, 0),
            [
                ("audio", 1, b"aaaa"),
                ("audio", 1, b"bbbb"),
                ("transcript", 0, b""),
                ("audio", 2, b"cccc"),
                ("audio", 2, b"dd"),
            ],
        ),
        (
            Point(1, 0),
            [
                ("audio", 1, b"aaaa"),
                ("audio", 1, b"bbbb"),
                ("transcript", 0, b""),
                ("audio", 2, b"cccc"),
                ("audio", 2, b"dd"),
            ],
        ),
        (
            Point(1, 3),
            [
                ("audio", 1, b"a"),
                ("audio", 1, b"bbbb"),
                ("transcript", 0, b""),
                ("audio", 2, b"cccc"),
                ("audio", 2, b"dd"),
            ],
        ),
        (
            Point(1, 4),
            [("audio", 1, b"bbbb"), ("transcript", 0, b""), ("audio", 2, b"cccc"), ("audio", 2, b"dd")],
        ),
        # at the reply boundary: the next reply whole, its transcript first
        (Point(1, 8), [("transcript", 0, b""), ("audio", 2, b"cccc"), ("audio", 2, b"dd")]),
        (Point(2, 1), [("audio", 2, b"ccc"), ("audio", 2, b"dd")]),
        (Point(2, 4), [("audio", 2, b"dd")]),
        (Point(2, 5), [("audio", 2, b"d")]),
        (Point(2, 6), []),
        (Point(3, 0), []),
    ],
    ids=lambda v: f"{v.response_id}@{v.offset}" if isinstance(v, Point) else "",
)
def test_a_resume_sends_the_rest_of_its_reply_then_everything_after(point, expected) -> None:
    assert _summary(_log(*LOG).replay(point)) == expected


def test_every_resume_point_gives_the_exact_continuation() -> None:
    log = _log(*LOG)
    whole = b"aaaabbbb", b"ccccdd"
    for rid, reply in enumerate(whole, start=1):
        for offset in range(len(reply) + 1):
            sent = _summary(log.replay(Point(rid, offset)))
            assert b"".join(d for _, r, d in sent if r == rid) == reply[offset:]
            later = b"".join(d for _, r, d in sent if r > rid)
            assert later == b"".join(whole[rid:])


def test_the_point_after_the_last_sent_message() -> None:
    log = _log(*LOG)
    assert log.point_after(LOG[1]) == Point(1, 8)
    assert log.point_after(LOG[2]) == Point(1, 8)  # a transcript: the audio before it
    assert log.point_after(LOG[4]) == Point(2, 6)
    assert log.point_after(None) == Point(0, 0)
    assert log.point_after(audio(9, b"x")) is None  # no longer in the log: replay all


def test_interrupted_replies_are_never_resent() -> None:
    log = _log(*LOG)
    log.cut(1)
    assert _summary(log.replay(Point(1, 2))) == [
        ("transcript", 0, b""),
        ("audio", 2, b"cccc"),
        ("audio", 2, b"dd"),
    ]
    log.note(agent_pb2.ConverseResponse(interruption=agent_pb2.Interruption(response_id=2)))
    assert _summary(log.replay(Point(2, 0))) == [("transcript", 0, b""), ("interruption", 0, b"")]


def test_a_live_log_gives_way_but_a_held_one_overflows() -> None:
    log = ReplayLog(ULAW, max_audio_s=0.001)  # 8 bytes
    for message in LOG:
        log.note(message)
    assert log.audio_bytes <= 8
    assert not log.overflowed
    log.hold()
    log.note(audio(3, b"e" * 9))
    assert log.overflowed  # what came during the hold is never trimmed
    assert _summary(log.replay(Point(3, 0)))[-1] == ("audio", 3, b"e" * 9)


@pytest.mark.parametrize(
    ("fmt", "offset_us", "nbytes"),
    [(ULAW, 125, 1), (ULAW, 20_000, 160), (PCM16, 125, 4), (PCM16, 20_000, 640), (PCM22, 125, 6)],
)
def test_offsets_become_whole_samples(fmt, offset_us, nbytes) -> None:
    assert us_to_bytes(offset_us, fmt) == nbytes


def test_a_cut_chunk_keeps_the_alignment_of_what_remains() -> None:
    chunk = audio(1, b"\x00" * 160)  # 20 ms
    chunk.audio.alignment.chars.extend(["h", "i"])
    chunk.audio.alignment.char_start_ms.extend([0, 10])
    chunk.audio.alignment.char_duration_ms.extend([10, 10])
    ((tail, original),) = _log(chunk).replay(Point(1, 80))  # from 10 ms
    assert original is chunk
    assert len(tail.audio.data) == 80
    assert list(tail.audio.alignment.chars) == ["i"]
    assert list(tail.audio.alignment.char_start_ms) == [0]
