"""webrtcvad detector: configuration, event timing on the media timeline, and chunking invariance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from audio_signals import to_pcm, tone
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebridge.media.audio.vad import VadConfig, VadEvent, VoiceActivityDetector, WebRtcVad


@pytest.fixture(scope="module")
def utterance(speech_8k: np.ndarray) -> tuple[bytes, int, int]:
    """1 s silence, speech, 1 s silence, as PCM; with the true speech start and end (ms, energy-based)."""
    pad = np.zeros(8000)
    x = np.concatenate([pad, speech_8k, pad])
    frames = x[: len(x) // 80 * 80].reshape(-1, 80)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    active = np.flatnonzero(energy > energy.max() - 40)
    return to_pcm(x), int(active[0]) * 10, int(active[-1] + 1) * 10


def run(vad: WebRtcVad, pcm: bytes, chunk_ms: int = 20, t0: int = 0) -> list[VadEvent]:
    step = chunk_ms * 16
    events: list[VadEvent] = []
    for i in range(0, len(pcm), step):
        events += vad.feed(pcm[i : i + step], t0 + i // 16)
    return events


@pytest.mark.parametrize(
    "kwargs",
    [
        {"aggressiveness": 4},
        {"aggressiveness": -1},
        {"frame_ms": 15},
        {"frame_ms": 0},
        {"onset_ms": 0},
        {"offset_ms": -10},
        {"onset_ms": 12.5},
    ],
)
def test_invalid_config_raises_a_clear_value_error(kwargs: dict[str, object]) -> None:
    field = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"VadConfig.{field}"):
        VadConfig(**kwargs)  # type: ignore[arg-type]


def test_defaults_and_frame_counts() -> None:
    c = VadConfig()
    assert (c.aggressiveness, c.frame_ms, c.onset_ms, c.offset_ms) == (2, 10, 30, 400)
    assert (c.onset_frames, c.offset_frames) == (3, 40)
    assert VadConfig(frame_ms=20, onset_ms=30).onset_frames == 2


def test_implements_the_protocol() -> None:
    assert isinstance(WebRtcVad(), VoiceActivityDetector)


def test_event_decided_at_defaults_to_timestamp() -> None:
    assert VadEvent("start", 120).decided_at_ms == 120
    assert VadEvent("end", 120, 520).decision_delay_ms == 400


def test_silence_gives_no_events() -> None:
    vad = WebRtcVad()
    assert run(vad, bytes(2 * 8000 * 2)) == []
    assert not vad.is_speaking


def test_speech_gives_start_then_end_at_the_true_boundaries(utterance: tuple[bytes, int, int]) -> None:
    pcm, true_start, true_end = utterance
    vad = WebRtcVad()
    events = run(vad, pcm)
    assert [e.kind for e in events] == ["start", "end"]
    start, end = events
    assert abs(start.timestamp_ms - true_start) <= 30
    # webrtcvad keeps saying "speech" for its own hangover (≤ 90 ms at 10 ms frames in mode 2) after the end
    assert true_end - 30 <= end.timestamp_ms <= true_end + 150
    # stamped where speech happened; decided after exactly onset / offset of evidence
    assert start.decided_at_ms - start.timestamp_ms == 30
    assert end.decided_at_ms - end.timestamp_ms == 400
    assert not vad.is_speaking


def test_is_speaking_between_start_and_end(utterance: tuple[bytes, int, int]) -> None:
    pcm, _, _ = utterance
    vad = WebRtcVad()
    seen = []
    for i in range(0, len(pcm), 320):
        if vad.feed(pcm[i : i + 320], i // 16):
            seen.append(vad.is_speaking)
    assert seen == [True, False]


def test_events_follow_the_callers_timeline(utterance: tuple[bytes, int, int]) -> None:
    pcm, _, _ = utterance
    base = run(WebRtcVad(), pcm)
    shifted = run(WebRtcVad(), pcm, t0=123_456)
    assert [(e.kind, e.timestamp_ms + 123_456, e.decided_at_ms + 123_456) for e in base] == [
        (e.kind, e.timestamp_ms, e.decided_at_ms) for e in shifted
    ]


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_chunking_gives_the_same_events(utterance: tuple[bytes, int, int], data: st.DataObject) -> None:
    pcm, _, _ = utterance
    n_ms = len(pcm) // 16
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=n_ms), max_size=40), label="cuts"))
    vad = WebRtcVad()
    events: list[VadEvent] = []
    for a, b in itertools.pairwise([0, *cuts, n_ms]):
        events += vad.feed(pcm[a * 16 : b * 16], a)
    assert events == run(WebRtcVad(), pcm)


def test_a_gap_in_timestamps_drops_the_partial_frame() -> None:
    vad = WebRtcVad(VadConfig(onset_ms=10))
    loud = to_pcm(tone(440, 8000, 0.2, amp=10000))
    vad.feed(loud[:50], 0)  # 25 samples buffered
    events = vad.feed(loud[: 80 * 2 * 5], 1000)  # stream resumes 1 s later
    assert events[0].timestamp_ms == 1000


class ScriptedVad:
    """Stands in for webrtcvad.Vad: answers is_speech from a script of 0/1 per frame."""

    def __init__(self, script: str) -> None:
        self.answers = iter(script)

    def is_speech(self, frame: bytes, rate: int) -> bool:
        assert (len(frame), rate) == (160, 8000)
        return next(self.answers) == "1"


def scripted(script: str, config: VadConfig) -> list[VadEvent]:
    vad = WebRtcVad(config)
    vad._vad = ScriptedVad(script)  # type: ignore[assignment]
    return vad.feed(bytes(160 * len(script)), 1000)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("0110110", []),  # never 3 speech frames in a row
        ("0111000", [("start", 1010, 1040), ("end", 1040, 1070)]),
        ("00111110001000", [("start", 1020, 1050), ("end", 1070, 1100)]),  # a lone frame does not restart
        ("01111001001001", [("start", 1010, 1040)]),  # silences shorter than offset never end it
        (
            "1110001111000",
            [("start", 1000, 1030), ("end", 1030, 1060), ("start", 1060, 1090), ("end", 1100, 1130)],
        ),
    ],
)
def test_onset_and_offset_state_machine(script: str, expected: list[tuple[str, int, int]]) -> None:
    events = scripted(script, VadConfig(onset_ms=30, offset_ms=30))
    assert [(e.kind, e.timestamp_ms, e.decided_at_ms) for e in events] == expected


def test_reset_forgets_speaking_state_without_an_event(utterance: tuple[bytes, int, int]) -> None:
    pcm, true_start, _ = utterance
    vad = WebRtcVad()
    cut = (true_start + 300) * 16
    assert [e.kind for e in run(vad, pcm[:cut])] == ["start"]
    vad.reset()
    assert not vad.is_speaking
    assert vad.feed(bytes(16000), 5000) == []


def test_torn_sample_is_rejected() -> None:
    with pytest.raises(ValueError, match="whole int16"):
        WebRtcVad().feed(b"\x00", 0)
