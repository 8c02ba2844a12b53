"""Decide once: the per-utterance decisions, frame by frame on a virtual timeline (no audio, no clock).

Each test builds what the onset detector would report every 10 ms — `S` caller speech, `a` louder than
echo and noise but not speech, `.` nothing — and checks what one utterance does to the agent's reply.
"""

from __future__ import annotations

import numpy as np
import pytest

from voicebridge.media.bargein_decide import FRAME_MS, DecideOnce, Decision, Verdict
from voicebridge.media.config import BargeInConfig

CONFIG = BargeInConfig()


def decide(frames: str, config: BargeInConfig = CONFIG) -> list[Verdict]:
    decider = DecideOnce(config)
    verdicts: list[Verdict] = []
    for i, frame in enumerate(frames):
        verdicts += decider.step(i * FRAME_MS / 1000.0, frame == "S", frame in "Sa")
        if verdicts and verdicts[-1].decision is Decision.CONFIRM:
            break  # the reply is stopped: nothing left to decide about it
    return verdicts


def kinds(verdicts: list[Verdict]) -> list[Decision]:
    return [v.decision for v in verdicts]


def ms(n: int) -> int:
    return n // FRAME_MS


P, R, C = Decision.PAUSE, Decision.RESUME, Decision.CONFIRM


@pytest.mark.parametrize("length_ms", [300, 450, 600, 700])
def test_a_backchannel_pauses_once_and_the_agent_goes_on(length_ms: int) -> None:
    verdicts = decide("S" * ms(length_ms) + "." * 200)
    assert kinds(verdicts) == [P, R]
    assert verdicts[0].at <= 0.05  # paused at the onset: 40 ms of speech


def test_a_backchannel_with_gaps_inside_it_is_still_one_backchannel() -> None:
    # "uh ... huh": two bursts and noise-like frames between, all within the backchannel's length.
    assert kinds(decide("SSSSSSSSSSaaa.....SSSSSSSSSSSS" + "." * 200)) == [P, R]


def test_a_sustained_interruption_stops_the_agent_once_in_bounded_time() -> None:
    verdicts = decide("S" * 300)
    assert kinds(verdicts) == [P, C]
    decided_after = verdicts[1].at - verdicts[1].onset
    assert decided_after <= (CONFIG.backchannel_ms + CONFIG.late_window_ms) / 1000.0


def test_an_interruption_that_noise_makes_sparse_is_confirmed_by_the_deadline_not_resumed() -> None:
    # Speech in a third of the frames, never 150 ms of it in any 300 ms window, gaps under release_ms.
    verdicts = decide("SSSSS..........." * 20)
    assert kinds(verdicts) == [P, C]
    assert verdicts[1].at - verdicts[1].onset <= CONFIG.decide_ms / 1000.0 + 0.021


def test_speech_that_goes_on_after_a_resume_cuts_once_without_a_second_pause_and_resume() -> None:
    # A short word, a pause long enough to resume, then the sentence: pause, resume, then one cut.
    verdicts = decide("S" * 25 + "." * 65 + "S" * 150)
    assert kinds(verdicts) == [P, R, P, C]
    assert verdicts[2].at == verdicts[3].at  # the second clear is the cut itself
    assert verdicts[3].onset == verdicts[0].onset  # the same utterance


def test_a_short_word_again_after_a_resume_neither_pauses_nor_cuts() -> None:
    # "mm-hm ... yeah": the second sound comes within the credit, is too short to be an interruption
    # on its own, and so does nothing at all (the caller heard one pause, not two).
    assert kinds(decide("S" * 30 + "." * 65 + "S" * 20 + "." * 200)) == [P, R]


def test_a_new_utterance_after_the_credit_is_judged_afresh() -> None:
    gap = ms(CONFIG.release_ms + CONFIG.credit_ms) + 10
    assert kinds(decide("S" * 30 + "." * gap + "S" * 30 + "." * 100)) == [P, R, P, R]


def test_the_decision_never_comes_later_than_decide_ms_after_the_onset() -> None:
    # Neither quiet nor speech: frames louder than noise keep the utterance open; the deadline decides.
    verdicts = decide("SSSSS" + "a" * 400)
    assert kinds(verdicts) == [P, R]
    assert verdicts[1].at - verdicts[1].onset <= CONFIG.decide_ms / 1000.0 + 0.021


def test_random_utterances_never_pause_resume_and_cut_twice() -> None:
    """Property over many seeded random frame streams: between two silences longer than release plus
    credit (one utterance), at most one pause that resumed, then at most one cut; every pending
    decision within decide_ms of its onset."""
    rng = np.random.default_rng(17)
    quiet = ms(CONFIG.release_ms + CONFIG.credit_ms) + 5
    for _ in range(300):
        frames = "".join(
            rng.choice(list("S.a"), p=[0.45, 0.4, 0.15]) for _ in range(int(rng.integers(50, 250)))
        )
        verdicts = decide(frames + "." * quiet)
        decisions = kinds(verdicts)
        assert decisions.count(R) <= 1
        assert decisions.count(C) <= 1
        assert decisions in ([P, R], [P, C], [P, R, P, C], [])
        if R in decisions or decisions == [P, C]:
            first_decision = verdicts[1]
            assert first_decision.at - verdicts[0].onset <= CONFIG.decide_ms / 1000.0 + 0.021


def test_the_deadline_confirms_nothing_that_was_never_heard_after_the_backchannel_window() -> None:
    # A murmur pauses the agent; the caller's own voice (firm) starts late enough that, with a short
    # deadline, nothing after its backchannel window has been heard when the deadline comes: that is
    # no evidence of an interruption, so the agent resumes.
    config = BargeInConfig(decide_ms=900)
    decider = DecideOnce(config)
    verdicts: list[Verdict] = []
    for i in range(200):  # the murmur keeps the utterance open (active) past the deadline
        speech = i < 5 or 50 <= i < 60
        verdicts += decider.step(i * FRAME_MS / 1000.0, speech, i < 120, firm=50 <= i < 60)
    assert kinds(verdicts) == [P, R]
    assert verdicts[1].at - verdicts[1].onset <= config.decide_ms / 1000.0 + 0.021


def test_a_yeah_after_noise_kept_a_let_go_utterance_open_must_outlast_a_backchannel_itself() -> None:
    # Pause and resume; babble keeps what follows open (`a`) until a "yeah" 0.6 s later. Timed from the
    # first sound, the "yeah" would already be past the backchannel window and cut the reply; after
    # 200 ms without firm speech it is a new sound, and 400 ms of it is only a backchannel.
    let_go = "S" * 30 + "." * 65
    yeah = "S" * 5 + "a" * 60 + "S" * 40
    assert kinds(decide(let_go + yeah + "a" * 100 + "." * 200)) == [P, R]


def test_an_interruption_after_noise_kept_a_let_go_utterance_open_still_cuts_once() -> None:
    let_go = "S" * 30 + "." * 65
    verdicts = decide(let_go + "S" * 5 + "a" * 60 + "S" * 150)
    assert kinds(verdicts) == [P, R, P, C]
    start = (len(let_go) + 65) * FRAME_MS / 1000.0  # the interruption's own first frame
    assert verdicts[3].at - start >= CONFIG.backchannel_ms / 1000.0


def test_the_backchannel_window_starts_at_the_first_clear_frame_not_at_a_murmur() -> None:
    # A murmur (firm, not clear: babble just over the line's loud moments) pauses the agent; a "yeah"
    # (clear) 350 ms later; then sparse babble. Timed from the murmur, the yeah's end and the babble
    # would make 150 ms of late speech and cut the reply; timed from the yeah, they are a backchannel.
    decider = DecideOnce(CONFIG)
    verdicts: list[Verdict] = []
    for i in range(260):
        yeah = 40 <= i < 80
        babble = 80 <= i < 130 and i % 10 < 3
        speech = i < 5 or yeah or babble
        verdicts += decider.step(
            i * FRAME_MS / 1000.0, speech, speech or 5 <= i < 40, firm=speech, clear=yeah
        )
    assert kinds(verdicts) == [P, R]


def test_babble_cannot_keep_a_watched_utterance_open_for_ever() -> None:
    # After a resume, babble (a firm burst every 300 ms) keeps re-anchoring the watched utterance. It
    # still ends within one more backchannel window after its deadline: the noise floor, frozen while
    # an utterance is judged, learns the line again, and the next sound is a new utterance.
    let_go = "S" * 30 + "." * 65
    verdicts = decide(let_go + ("a" * 25 + "S" * 5) * 20)
    assert kinds(verdicts)[:3] == [P, R, P]
    watch_start = (len(let_go) + 25) * FRAME_MS / 1000.0  # the first burst after the resume
    bound = (CONFIG.decide_ms + CONFIG.backchannel_ms + CONFIG.late_window_ms) / 1000.0
    assert verdicts[2].at - watch_start <= bound + 0.35  # the watch's end, then the next burst
