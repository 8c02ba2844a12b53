"""Barge-in: the detector on real speech and echo, and the controller's races on a virtual clock.

One file (~400 lines) for the detector and its controller, which are tested together through the same
speech fixtures; the decide-once timeline has its own file (test_media_bargein_decide.py).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from harness.audio import espeak_ulaw
from harness.virtual_clock import VirtualClock

from voicebridge.bench import bargein_eval
from voicebridge.media import bargein
from voicebridge.media.audio.g711 import ulaw_decode, ulaw_encode
from voicebridge.media.bargein import BargeInController, BargeInDetector, Decision
from voicebridge.media.config import BargeInConfig, PlayoutConfig
from voicebridge.media.playout import Playout
from voicebridge.v1 import agent_pb2, media_pb2

FRAME = 320  # 20 ms of 8 kHz 16-bit PCM


@pytest.fixture(scope="module")
def caller_speech() -> np.ndarray:
    return np.frombuffer(ulaw_decode(espeak_ulaw("Wait, stop, I have a question about my bill")), "<i2")


@pytest.fixture(scope="module")
def agent_speech() -> np.ndarray:
    text = "Thanks for calling. Your order shipped yesterday and should arrive by Friday afternoon."
    return np.frombuffer(ulaw_decode(espeak_ulaw(text, voice="en-gb")), "<i2")


def pcm(samples: np.ndarray) -> bytes:
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def phone(samples: np.ndarray) -> bytes:
    """What comes back over the phone line: through G.711 and back."""
    return ulaw_decode(ulaw_encode(pcm(samples)))


def run(detector: BargeInDetector, mic: bytes, playing: bool = True, start: float = 10.0):
    """Feed `mic` from clock time `start`, after the second of quiet line the caller listened to first
    (on a call the line is open before the agent speaks: the detector knows its noise floor)."""
    line = phone(np.random.default_rng(0).normal(0, 8, 8000))
    for offset in range(0, len(line), FRAME):
        detector.feed(line[offset : offset + FRAME], start - 1.0 + offset / 16000, False)
    verdicts = []
    for offset in range(0, len(mic) - FRAME + 1, FRAME):
        verdicts += detector.feed(mic[offset : offset + FRAME], start + offset / 16000, playing)
    return verdicts


def first_speech_s(samples: np.ndarray) -> float:
    loud = np.nonzero(np.abs(samples) > 0.1 * np.abs(samples).max())[0]
    return loud[0] / 8000


def test_caller_speech_over_the_agent_pauses_within_the_onset_then_confirms(caller_speech) -> None:
    detector = BargeInDetector()
    verdicts = run(detector, phone(caller_speech))
    assert [v.decision for v in verdicts][:2] == [Decision.PAUSE, Decision.CONFIRM]
    onset = 10.0 + first_speech_s(caller_speech)
    assert verdicts[0].at - onset <= 0.100
    assert verdicts[1].at - verdicts[0].onset >= 0.300 - 1e-9


def test_speech_while_the_agent_is_silent_is_no_barge_in(caller_speech) -> None:
    assert run(BargeInDetector(), phone(caller_speech), playing=False) == []


def test_a_backchannel_pauses_and_then_resumes(caller_speech) -> None:
    start = int(first_speech_s(caller_speech) * 8000)
    mhm = np.concatenate([caller_speech[start : start + 1600], np.zeros(8000)])  # 200 ms of voice
    verdicts = run(BargeInDetector(), phone(mhm))
    assert [v.decision for v in verdicts] == [Decision.PAUSE, Decision.RESUME]


def _voiced() -> np.ndarray:
    vowel = np.frombuffer(ulaw_decode(espeak_ulaw("aaaaaaaaaaaaaaaaaaaah")), "<i2").astype(np.float64)
    return vowel[4000:8800]  # steady voicing, no pause inside (600 ms)


def test_a_pause_between_words_does_not_resume_the_agent_mid_utterance() -> None:
    voiced = _voiced()
    # "Wait," (250 ms), a 300 ms pause, then "stop right there" (600 ms): one utterance, one stop.
    mic = np.concatenate([voiced[:2000], np.zeros(2400), voiced, np.zeros(4000)])
    verdicts = run(BargeInDetector(), phone(mic))[:2]  # after a confirm the agent would stop playing
    assert [v.decision for v in verdicts] == [Decision.PAUSE, Decision.CONFIRM]
    assert verdicts[1].onset == verdicts[0].onset  # one utterance, from its first word


def test_an_utterance_let_go_that_goes_on_stops_the_agent_once_without_a_second_pause() -> None:
    voiced = _voiced()
    # "Wait" (250 ms), then 700 ms of quiet (the agent resumes), then "stop right there": the same
    # utterance, so no second pause and resume: it is cut at once when it proves itself.
    mic = np.concatenate([voiced[:2000], np.zeros(5600), voiced, voiced, np.zeros(4000)])
    verdicts = run(BargeInDetector(), phone(mic))[:4]
    assert [v.decision for v in verdicts] == [
        Decision.PAUSE,
        Decision.RESUME,
        Decision.PAUSE,
        Decision.CONFIRM,
    ]
    assert verdicts[2].at == verdicts[3].at  # the second clear is the cut itself: no pause-resume again
    assert verdicts[3].onset == verdicts[0].onset


def test_the_callers_own_earlier_turn_does_not_raise_the_bar_for_interrupting(caller_speech) -> None:
    # The caller speaks (the agent silent), the agent answers, the caller cuts in: their own turn in
    # the last seconds of the line must not pass for loud background that the interruption must beat.
    detector = BargeInDetector()
    turn = phone(caller_speech[: 8000 * 2])
    run(detector, turn, playing=False, start=10.0)
    verdicts = run(detector, phone(caller_speech), start=12.5)
    assert [v.decision for v in verdicts][:2] == [Decision.PAUSE, Decision.CONFIRM]


def test_a_second_backchannel_long_after_the_first_starts_afresh() -> None:
    voiced = _voiced()
    mic = np.concatenate([voiced[:2000], np.zeros(16000), voiced[2000:4400], np.zeros(8000)])
    decisions = [v.decision for v in run(BargeInDetector(), phone(mic))]
    assert decisions == [Decision.PAUSE, Decision.RESUME, Decision.PAUSE, Decision.RESUME]


@pytest.mark.parametrize("echo_db", [-10, -20, -30])
@pytest.mark.parametrize("delay_ms", [50, 150, 300])
def test_the_agents_own_voice_echoed_back_never_interrupts(agent_speech, echo_db: int, delay_ms: int) -> None:
    detector = BargeInDetector()
    played = phone(agent_speech)
    detector.played(played, start=10.0)
    delay = np.zeros(8 * delay_ms)
    echo = np.concatenate([delay, np.frombuffer(played, "<i2") * 10 ** (echo_db / 20)])
    assert run(detector, phone(echo)) == []
    assert echo_db < -25 or detector.frames_gated > 0  # it was speech-like, and the gate caught it


def test_the_echo_path_is_learnt_at_its_delay(agent_speech) -> None:
    detector = BargeInDetector()
    played = phone(agent_speech)
    detector.played(played, start=10.0)
    echo = np.concatenate([np.zeros(8 * 150), np.frombuffer(played, "<i2") * 10 ** (-10 / 20)])
    assert run(detector, phone(echo[: 3 * 8000])) == []
    assert detector.echo_lag_slots is not None
    assert abs(detector.echo_lag_slots - 15) <= 2  # 150 ms
    assert detector.echo_gain == pytest.approx(10 ** (-10 / 20), rel=0.3)


def test_babble_that_shares_the_agents_rhythm_is_not_taken_for_an_echo(agent_speech) -> None:
    # Sound that follows the agent's rhythm but not at a fixed gain (here the agent's own audio, its
    # level switching between -20 and -6 dB every 100 ms): correlated, but no copy. Taken for an echo
    # it would be subtracted from the noise floor, and babble would pass for the caller.
    detector = BargeInDetector()
    played = phone(agent_speech)
    detector.played(played, start=10.0)
    x = np.frombuffer(played, "<i2").astype(np.float64)
    gains_db = np.where(np.arange(len(x) // 800 + 1) % 2 == 0, -20.0, -6.0)
    run(detector, phone(x * np.repeat(10 ** (gains_db / 20), 800)[: len(x)]))
    assert detector.echo_lag_slots is None


def test_on_a_line_busy_with_babble_a_frame_must_stand_out_further_to_start_the_backchannel_window(
    caller_speech,
) -> None:
    # `clear` (where the caller's own voice starts) is `firm` on a steady line; on a line whose loud
    # moments sit well over its median (babble) it needs ANCHOR_EXTRA_DB more.
    frames = [pcm(caller_speech[i : i + 80]) for i in range(0, len(caller_speech) - 80, 80)]
    detector = BargeInDetector()
    frame = next(f for f in frames if detector._vad.is_speech(f, 8000) and bargein.frame_levels(f)[0] > 3000)
    level = bargein.frame_levels(frame)[0]
    detector._noise_slots = detector.HISTORY
    detector.echo_known = True
    firm_db = BargeInConfig().peak_margin_db + 3.0  # the frame is this far over the line's loud moments
    detector.noise_peak = level / 10 ** (firm_db / 20)
    detector.noise_level = detector.noise_peak / 10 ** (1.0 / 20)  # steady noise: peak ~ median
    assert detector._classify(frame, 0.0, level)[2:] == (True, True)
    detector.noise_level = detector.noise_peak / 10 ** (6.0 / 20)  # babble: peaks 6 dB over median
    assert detector._classify(frame, 0.0, level)[2:] == (True, False)
    detector.noise_peak = level / 10 ** ((firm_db + detector.ANCHOR_EXTRA_DB) / 20)
    detector.noise_level = detector.noise_peak / 10 ** (6.0 / 20)
    assert detector._classify(frame, 0.0, level)[2:] == (True, True)


@pytest.fixture(scope="module")
def corpus() -> bargein_eval.Corpus:
    return bargein_eval.make_corpus()


def test_the_caller_talking_over_echo_still_interrupts(corpus) -> None:
    # Closed loop, as on a call: when the detector pauses the agent, its audio and so its echo stop.
    condition = bargein_eval.Condition("echo -10 dB", echo_db=-10)
    rng = np.random.default_rng(3)
    results = [bargein_eval.run_trial(rng, corpus, condition, BargeInConfig()) for _ in range(10)]
    assert all(r.confirmed for r in results)
    assert sum(r.false_confirms for r in results) == 0


def test_quiet_line_noise_is_ignored() -> None:
    noise = np.random.default_rng(1).normal(0, 20, 16000)  # about -64 dBFS
    assert run(BargeInDetector(), phone(noise)) == []


def test_config_rejects_inconsistent_thresholds() -> None:
    with pytest.raises(ValueError, match="CONFIRM"):
        BargeInConfig(onset_ms=200, onset_window_ms=200, confirm_ms=100)
    with pytest.raises(ValueError, match="DECIDE"):
        BargeInConfig(backchannel_ms=1500, decide_ms=1500)


# -- the controller: decisions applied to playback, racing the agent's own interruption ------------


class Call:
    """A controller wired to a real Playout on a virtual clock, with Twilio's playback emulated:
    frames play back to back in real time and each mark is echoed when the audio before it has played
    (or at once on a clear)."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.clears = 0
        self.told: list[agent_pb2.CallerInterrupted] = []
        self.frames: list[bytes] = []
        self.heard_s: list[float] = []  # at each clear: seconds of agent audio the caller had heard
        self._emitted_s = 0.0
        self._buffer_end = 0.0
        self._marks: list[tuple[float, str]] = []
        self.playout = Playout(self.clock, self._emit, PlayoutConfig())
        self.ctrl = BargeInController(
            BargeInDetector(), self.playout, self.clock, self._clear, self.told.append, lambda: None
        )

    async def _emit(self, message: media_pb2.CallResponse) -> None:
        self.frames.append(message.audio.payload)
        self._emitted_s += len(message.audio.payload) / 8000
        self._buffer_end = max(self._buffer_end, self.clock.now()) + len(message.audio.payload) / 8000
        if message.audio.mark:
            self._marks.append((self._buffer_end, message.audio.mark))

    async def _clear(self) -> None:
        self.clears += 1
        self.heard_s.append(self._emitted_s - max(0.0, self._buffer_end - self.clock.now()))
        self._emitted_s = self.heard_s[-1]
        self._buffer_end = self.clock.now()
        marks, self._marks = self._marks, []
        for _, name in marks:
            self.playout.on_mark(name)

    async def advance(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            await self.clock.advance(min(0.005, end - self.clock.now()))
            while self._marks and self._marks[0][0] <= self.clock.now() + 1e-9:
                self.playout.on_mark(self._marks.pop(0)[1])

    def agent_says(self, response_id: int, ms: int, text: str = "", chunk_ms: int | None = None) -> None:
        """One reply of `ms`, sent in chunks of `chunk_ms` (all of it in one by default), each with the
        alignment of the characters that start in it, timed from the chunk (as ElevenLabs sends it)."""
        step = ms / len(text) if text else 0.0
        chunk_ms = chunk_ms or ms
        for begin in range(0, ms, chunk_ms):
            length = min(chunk_ms, ms - begin)
            chunk = agent_pb2.AudioChunk(data=b"\x10" * 8 * length, response_id=response_id)
            if text:
                mine = [i for i in range(len(text)) if begin <= i * step < begin + length]
                chunk.alignment.CopyFrom(
                    agent_pb2.TextAlignment(
                        chars=[text[i] for i in mine], char_start_ms=[round(i * step - begin) for i in mine]
                    )
                )
            self.ctrl.words.note(chunk, length)
            if self.ctrl.accepts(response_id):
                self.playout.enqueue(chunk.data, response_id)

    async def caller(self, audio: bytes) -> None:
        for offset in range(0, len(audio) - FRAME + 1, FRAME):
            await self.ctrl.caller_audio(audio[offset : offset + FRAME], self.clock.now())
            await self.advance(0.02)

    def echo_all_marks(self, names: list[str]) -> None:
        for name in names:
            self.playout.on_mark(name)


@pytest.fixture
async def call():
    c = Call()
    task = asyncio.create_task(c.playout.run())
    await c.clock.settle()
    await c.caller(phone(np.random.default_rng(0).normal(0, 8, 2400)))  # the open line, before any reply
    yield c
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_speech_during_playback_clears_once_and_tells_the_agent_what_was_heard(
    call, caller_speech
) -> None:
    call.agent_says(1, 3000, text="Your order shipped yesterday")
    await call.advance(0.5)
    await call.caller(phone(caller_speech))
    assert call.clears == 1
    assert len(call.told) == 1
    assert call.told[0].response_id == 1
    assert 0 < call.told[0].heard_ms < 3000
    assert call.told[0].heard_text
    assert "Your order shipped yesterday".startswith(call.told[0].heard_text)
    assert not call.ctrl.accepts(1)  # late audio of the interrupted reply is refused
    sent = len(call.frames)
    await call.advance(1.0)
    assert len(call.frames) == sent  # nothing of it leaks after the clear


async def test_speech_during_silence_does_nothing(call, caller_speech) -> None:
    await call.caller(phone(caller_speech))
    assert call.clears == 0
    assert call.told == []


async def test_an_agent_interruption_during_a_pause_does_not_clear_twice(call, caller_speech) -> None:
    call.agent_says(2, 3000)
    await call.advance(0.3)
    start = int(first_speech_s(caller_speech) * 8000)
    await call.caller(phone(caller_speech[: start + 8 * 120]))  # paused, not yet confirmed
    assert call.clears == 1
    assert call.ctrl.paused
    await call.ctrl.agent_interrupted(2)  # the agent's own interruption arrives meanwhile
    assert call.clears == 1
    await call.caller(phone(caller_speech[start + 8 * 120 :]))
    assert call.told == []  # the agent already knows; it is not told twice
    assert not call.ctrl.accepts(2)


async def test_a_local_barge_in_makes_the_agents_later_interruption_a_no_op(call, caller_speech) -> None:
    call.agent_says(3, 3000)
    await call.advance(0.3)
    await call.caller(phone(caller_speech))
    assert (call.clears, len(call.told)) == (1, 1)
    await call.ctrl.agent_interrupted(3)
    assert call.clears == 1
    call.agent_says(4, 500)  # the agent's next reply plays normally
    await call.advance(0.2)
    assert call.playout.is_playing


async def test_the_agents_interruption_first_then_the_callers_speech_clears_once(call, caller_speech) -> None:
    call.agent_says(5, 3000)
    await call.advance(0.3)
    await call.ctrl.agent_interrupted(5)
    await call.caller(phone(caller_speech))
    assert call.clears == 1
    assert call.told == []


async def test_a_backchannel_resumes_the_reply_where_the_caller_stopped_hearing_it(
    call, caller_speech
) -> None:
    call.agent_says(6, 2000)
    await call.advance(0.3)
    start = int(first_speech_s(caller_speech) * 8000)
    mhm = np.concatenate([caller_speech[start : start + 1600], np.zeros(8000)])
    await call.caller(phone(mhm))
    assert call.clears == 1
    assert call.told == []
    assert call.playout.is_playing
    assert not call.ctrl.paused


REPLY_TEXT = "Your order shipped yesterday and should arrive by Friday afternoon"


async def test_a_reply_in_many_chunks_is_reported_heard_from_its_start_and_never_resumes(
    call, caller_speech
) -> None:
    call.agent_says(7, 4000, text=REPLY_TEXT, chunk_ms=100)  # 40 chunks of one reply
    await call.advance(1.5)
    await call.caller(phone(caller_speech))
    assert call.clears == 1
    (told,) = call.told
    assert told.response_id == 7
    # Counted from the reply's first sample, within one frame of what the caller heard.
    assert abs(told.heard_ms / 1000 - call.heard_s[0]) <= 0.020
    assert told.heard_ms > 1500
    chars = round(told.heard_ms / (4000 / len(REPLY_TEXT)) + 0.5)  # characters started by then
    assert REPLY_TEXT[:chars].strip().startswith(told.heard_text)
    assert len(told.heard_text) >= chars - 2
    sent = len(call.frames)
    call.agent_says(7, 1000, chunk_ms=100)  # the rest of that reply, late: refused
    await call.advance(1.0)
    assert len(call.frames) == sent
    call.agent_says(8, 600, chunk_ms=100)  # the next reply plays in full
    await call.advance(1.0)
    assert sum(len(f) for f in call.frames[sent:]) == 8 * 600
    assert call.clears == 1


async def test_words_of_the_reply_playing_survive_a_next_reply_whose_id_jumps_ahead(
    call, caller_speech
) -> None:
    """Reply ids need not be consecutive (ElevenLabs' are chunk ids): a queued next reply with a far
    larger id must not make media forget the words of the one the caller is hearing."""
    call.agent_says(1, 4000, text=REPLY_TEXT, chunk_ms=100)
    call.agent_says(100, 500, text="Anything else?")
    await call.advance(1.5)
    await call.caller(phone(caller_speech))
    (told,) = call.told
    assert told.response_id == 1
    assert told.heard_text
    assert REPLY_TEXT.startswith(told.heard_text)


async def test_a_reply_queued_behind_the_interrupted_one_does_not_resume_either(call, caller_speech) -> None:
    call.agent_says(1, 4000, chunk_ms=100)
    call.agent_says(100, 500)  # the head of a next reply, queued: the clear drops it too
    await call.advance(1.5)
    await call.caller(phone(caller_speech))
    sent = len(call.frames)
    call.agent_says(100, 500)  # its tail, late
    await call.advance(1.0)
    assert len(call.frames) == sent
    call.agent_says(101, 300)  # a reply after the barge-in plays in full
    await call.advance(1.0)
    assert sum(len(f) for f in call.frames[sent:]) == 8 * 300


def test_the_evaluation_reports_every_condition_and_target() -> None:
    report = bargein_eval.evaluate(trials=2, minutes=0.05, seed=1)
    names = [row["condition"] for row in report["conditions"]]
    assert names == [c.name for c in bargein_eval.CONDITIONS + bargein_eval.FALSE_CONDITIONS]
    assert {t["target"] for t in report["targets"]} == {t[0] for t in bargein_eval.TARGETS} | {
        "clears per interruption, worst condition"
    }
    for column in ("onset_to_clear_p95_ms", "decisive_clear_p95_ms", "clears_per_interruption"):
        assert column in report["conditions"][0]
    by = {row["condition"]: row for row in report["conditions"]}
    assert by["clean + backchannels"]["backchannels"] > 0  # backchannels are said and counted
    assert "targets" in bargein_eval.render(report)
    # A subset (--only) gives exactly the rows the full run gave: each condition has its own stream.
    subset = bargein_eval.evaluate(trials=2, minutes=0.05, seed=1, only=["babble 10 dB"])
    assert subset["conditions"] == [r for r in report["conditions"] if "babble 10 dB" in r["condition"]]


def test_the_corpus_backchannels_are_real_words_of_callers_length(corpus) -> None:
    lengths = [len(x) / bargein_eval.RATE for x in corpus.backchannels]
    assert len(lengths) == len(bargein_eval.BACKCHANNELS) * len(bargein_eval.CALLER_VOICES)
    assert all(0.3 <= s <= 0.7 for s in lengths)
