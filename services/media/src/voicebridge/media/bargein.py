"""Barge-in: deciding, while the agent is talking, that the caller is really talking over it.

webrtcvad alone would stop the agent for its own voice echoed back from a speakerphone, for a cough,
for "mhm". Three things make this detector better than a VAD onset:

* **An echo gate.** Media knows exactly what the caller is hearing and when (it paced every frame), so
  each 10 ms of caller audio is compared with the loudest agent audio played in the window an echo
  could come from. Caller audio only counts as speech when it is louder than that reference minus
  `echo_margin_db` — an echo is always quieter than what produced it (a speakerphone returns it
  10 dB or more down), a caller talking over the agent is not.
* **A noise floor** taken without that echo, so steady noise and most chatter do not pass either.
* **Pause at onset, then decide once** (bargein_decide.py). After `onset_ms` of gated speech the
  agent's audio is paused at once (Twilio `clear`: the caller stops hearing it within ~100 ms). The
  interruption is confirmed, and the agent told, only when the speech outlasts a backchannel; if it
  ends first — "mm-hm", a cough, a click — playback resumes where the caller stopped hearing it and the
  agent never knew. The same utterance never pauses the agent twice.

The detector is pure logic on a caller-side timeline (the media service's clock): it returns
decisions and the call session carries them out. That keeps it testable on a virtual clock and lets
the barge-in evaluation drive exactly this code.

Why one file of ~400 lines: the echo gate, the noise floor and the frame classification share one
history of levels and are tuned together; the decision over time is bargein_decide.py, the call's side
(clear, resume, tell the agent) is BargeInController at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import numpy as np
import webrtcvad

from voicebridge.v1 import agent_pb2

from .audio import optional_audioop
from .bargein_decide import FRAME_MS, DecideOnce, Decision, Verdict
from .clock import Clock
from .config import BargeInConfig
from .metrics import BARGE_IN_LATENCY, BARGE_IN_RESUMES, BARGE_INS
from .playout import ClearResult, Playout

log = logging.getLogger(__name__)

_FRAME_SAMPLES = 80  # 10 ms at 8 kHz
_FRAME_BYTES = _FRAME_SAMPLES * 2


def _numpy_frame_levels(pcm8k: bytes) -> list[float]:
    usable = len(pcm8k) // _FRAME_BYTES * _FRAME_BYTES
    if not usable:
        return []
    frames = (
        np.frombuffer(pcm8k, dtype="<i2", count=usable // 2).reshape(-1, _FRAME_SAMPLES).astype(np.float64)
    )
    return np.sqrt(np.einsum("ij,ij->i", frames, frames) / _FRAME_SAMPLES).tolist()


def _pick_frame_levels() -> Callable[[bytes], list[float]]:
    """audioop.rms (C, ~15x cheaper on 10 ms frames) where Python still has it; numpy on 3.13."""
    audioop = optional_audioop.load()
    if audioop is None:
        return _numpy_frame_levels
    rms = audioop.rms

    def _audioop_frame_levels(pcm8k: bytes) -> list[float]:
        usable = len(pcm8k) // _FRAME_BYTES * _FRAME_BYTES
        return [float(rms(pcm8k[i : i + _FRAME_BYTES], 2)) for i in range(0, usable, _FRAME_BYTES)]

    return _audioop_frame_levels


#: RMS level of each whole 10 ms frame of 16-bit 8 kHz PCM.
frame_levels = _pick_frame_levels()


class LevelRing:
    """Audio level per 10 ms slot of a clock (slot = round(t / 10 ms)), for a few seconds back.

    Plain lists, not numpy: it is read and written a few slots at a time, every 10 ms, where
    numpy's per-call overhead would cost more than the arithmetic.
    """

    SLOTS = 1024  # 10.24 s of history

    def __init__(self) -> None:
        self._level = [0.0] * self.SLOTS
        self._slot = [-1] * self.SLOTS

    def add(self, first_slot: int, levels: list[float]) -> None:
        for k, level in enumerate(levels):
            slot = first_slot + k
            i = slot % self.SLOTS
            self._level[i] = level
            self._slot[i] = slot

    def loudest(self, first_slot: int, last_slot: int) -> float:
        best = 0.0
        level, tag, n = self._level, self._slot, self.SLOTS
        for slot in range(first_slot, last_slot + 1):
            i = slot % n
            if tag[i] == slot and level[i] > best:
                best = level[i]
        return best

    def window(self, first_slot: int, last_slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Levels of a slot range and which of them hold data (for the periodic estimates).

        Only the range is converted to numpy (two list slices when it wraps), not the whole ring."""
        n = last_slot - first_slot + 1
        if not 0 < n <= self.SLOTS:
            raise ValueError(f"a window of 1 to {self.SLOTS} slots, not {n}")
        start = first_slot % self.SLOTS
        stop = start + n
        if stop <= self.SLOTS:
            levels, tags = self._level[start:stop], self._slot[start:stop]
        else:
            wrap = stop - self.SLOTS
            levels = self._level[start:] + self._level[:wrap]
            tags = self._slot[start:] + self._slot[:wrap]
        return np.array(levels), np.array(tags) == np.arange(first_slot, last_slot + 1)


class BargeInDetector:
    """See the module docstring. Feed it what plays (`played`) and what the caller sends (`feed`).

        The echo gate adapts: once it has heard enough agent speech it estimates the echo path (the delay
        and gain at which the agent's level comes back on the caller's line, by correlating the two level
        envelopes). A handset with no echo path then costs the caller nothing; a speakerphone's echo is
        compared at its actual delay. Until then, and whenever the estimate is unsure, the conservative
        rule holds: louder than the loudest agent audio of the echo window, minus `echo_margin_db`.
        A tracked noise floor (by default the median caller-line level of the last 3 s: steady noise and
    most background chatter sit there, the caller cutting in rises above it) keeps noise from passing for
    speech; webrtcvad alone calls babble speech in every mode (docs/telephone-audio.md#vad).
    """

    UPDATE_EVERY = 50  # frames (500 ms) between estimates while learning...
    SETTLED_EVERY = 100  # ...and (1 s) once the echo path is known
    HISTORY = 300  # slots (3 s) used by each estimate
    PEAK_PERCENTILE = 90.0  # the line's loud moments...
    PEAK_CAP_DB = 6.0  # ...at most this far above its median
    EARLY_EVERY = 10  # frames between noise-floor estimates in a call's first seconds...
    EARLY_SLOTS = 20  # ...from as little as 200 ms of the caller's line: babble must not pass meanwhile
    # An echo is the agent's audio at a fixed gain: where the agent is loud the line follows it within
    # a few dB (measured: interquartile spread <= 4 dB at -10 to -30 dB echo, with noise and a quiet
    # caller). Babble that happens to correlate with the agent's rhythm spreads 7.6 dB or more; taken
    # for an echo it was subtracted from the noise floor, which dropped ~7 dB and let babble through.
    ECHO_SPREAD_DB = 6.0
    # On a line busy with babble (its loud moments over BUSY_SPREAD_DB above its median; steady noise
    # sits within ~1 dB), the backchannel window starts at the first frame ANCHOR_EXTRA_DB above the
    # confirming bar (`clear`): a murmur that passed the bar just before a "yeah" started the window
    # early, and the babble after the "yeah" then looked like its continuation. Only the window's
    # start moves; what confirms is unchanged. A caller at 5 dB over babble pays (docs/barge-in.md).
    ANCHOR_EXTRA_DB = 5.0
    BUSY_SPREAD_DB = 2.0

    def __init__(self, config: BargeInConfig | None = None) -> None:
        self.config = cfg = config or BargeInConfig()
        self._vad = webrtcvad.Vad(cfg.aggressiveness)
        self._reference = LevelRing()  # what the caller heard of the agent
        self._near = LevelRing()  # the caller's line
        self._margin = 10 ** (-cfg.echo_margin_db / 20.0)
        self._excess = 10 ** (cfg.echo_excess_db / 20.0)
        self._snr = 10 ** (cfg.noise_margin_db / 20.0)
        self._floor = 32768.0 * 10 ** (cfg.min_level_dbfs / 20.0)
        self._max_lag = max(1, cfg.echo_window_ms // FRAME_MS)
        self._active = 10 ** (cfg.active_margin_db / 20.0)
        self._firm = 10 ** (cfg.peak_margin_db / 20.0)
        self._peak_cap = 10 ** (self.PEAK_CAP_DB / 20.0)
        self._clear = 10 ** ((cfg.peak_margin_db + self.ANCHOR_EXTRA_DB) / 20.0)
        self._busy = 10 ** (self.BUSY_SPREAD_DB / 20.0)
        self._decide = DecideOnce(cfg)
        self._partial = b""
        self._frames_seen = 0
        self._noise_slots = 0  # caller-line slots behind the noise floor estimate
        self._far_active_slots = 0
        self.echo_known = False  # the echo path has been estimated (present or not)
        self.echo_lag_slots: int | None = None  # None: no echo path
        self.echo_gain = 0.0
        self.noise_level = 0.0
        self.noise_peak = 0.0  # the line's loud moments without the caller (babble's peaks)
        self.frames_gated = 0  # speech-like frames rejected as echo or noise (for metrics and tests)

    @property
    def paused(self) -> bool:
        return self._decide.paused

    def played(self, pcm8k: bytes, start: float) -> None:
        """Agent audio the caller hears from clock time `start` (16-bit 8 kHz PCM)."""
        self._reference.add(round(start * 100), frame_levels(pcm8k))

    def reset(self) -> None:
        """Forget the current utterance (the agent's own interruption settled it)."""
        self._decide.reset()

    def feed(self, pcm8k: bytes, start: float, agent_playing: bool) -> list[Verdict]:
        """Caller audio beginning at clock time `start`. Decides only while the agent plays or is paused."""
        data = self._partial + pcm8k
        start -= len(self._partial) / 16000.0
        usable = len(data) - len(data) % _FRAME_BYTES
        self._partial = data[usable:]
        if not usable:
            return []
        levels = frame_levels(data[:usable])
        self._near.add(round(start * 100), levels)
        active = self.config.enabled and (agent_playing or self.paused)
        if not active:
            self._decide.idle()
            return []
        verdicts: list[Verdict] = []
        for i, level in enumerate(levels):
            t = start + i * FRAME_MS / 1000.0
            self._frames_seen += 1
            every = self.SETTLED_EVERY if self.echo_known else self.UPDATE_EVERY
            if self._noise_slots < self.HISTORY // 2:
                every = self.EARLY_EVERY
            if self._frames_seen % every == 0 or self._frames_seen == 1:
                self._estimate(round(t * 100))
            offset = i * _FRAME_BYTES
            speech, loud, firm, clear = self._classify(data[offset : offset + _FRAME_BYTES], t, level)
            verdicts += self._decide.step(t, speech, loud, firm, clear)
        return verdicts

    def _estimate(self, now_slot: int) -> None:
        """Re-estimate the echo path and the noise floor from the last few seconds."""
        first = now_slot - self.HISTORY
        near, near_ok = self._near.window(first, now_slot)
        slots = int(near_ok.sum())
        if slots < self.EARLY_SLOTS:
            return
        span, span_ok = self._reference.window(first - self._max_lag, now_slot)
        if slots >= self.HISTORY // 2:
            self._estimate_echo(near, near_ok, span, span_ok)
        if not self._decide.deciding:  # the caller's own utterance is not line noise
            self.noise_level, self.noise_peak = self._noise_floor(near, near_ok, span, span_ok)
            self._noise_slots = slots

    def _noise_floor(
        self, near: np.ndarray, near_ok: np.ndarray, span: np.ndarray, span_ok: np.ndarray
    ) -> tuple[float, float]:
        """The line's level and its loud moments (median, capped p90) without the agent's echo: the
        echo has its own gate, and counting it as noise too would make a quiet caller on a
        speakerphone need to be louder than the echo twice."""
        line = near
        if self.echo_known and self.echo_lag_slots is not None:
            at = self._max_lag - self.echo_lag_slots  # span index of the reference for near[0]
            echo = np.where(span_ok[at : at + len(near)], span[at : at + len(near)] * self.echo_gain, 0.0)
            line = np.sqrt(np.maximum(near * near - echo * echo, 0.0))
        level, peak = np.percentile(line[near_ok], [self.config.noise_percentile, self.PEAK_PERCENTILE])
        # Babble's peaks sit a few dB over its median; anything far above is the caller's own voice
        # (they spoke before this reply): that must not raise the bar for their next interruption.
        return float(level), float(min(peak, level * self._peak_cap))

    def _estimate_echo(
        self, near: np.ndarray, near_ok: np.ndarray, span: np.ndarray, span_ok: np.ndarray
    ) -> None:
        # One gather of the agent's levels, then a view per lag: row k is the reference k slots back.
        far = np.lib.stride_tricks.sliding_window_view(span, len(near))[::-1]
        far_ok = np.lib.stride_tricks.sliding_window_view(span_ok, len(near))[::-1]
        usable = near_ok & far_ok.all(axis=0) & (far.max(axis=0) > self._floor)
        self._far_active_slots = int(usable.sum())
        if self._far_active_slots < 40:  # not enough agent speech heard yet to tell
            return
        x = np.log(near[usable] + 1.0)
        y = np.log(far[:, usable] + 1.0)
        x = x - x.mean()
        y = y - y.mean(axis=1, keepdims=True)
        corr = (y @ x) / (np.sqrt((y * y).sum(axis=1) * (x * x).sum()) + 1e-12)
        best = int(np.argmax(corr))
        if corr[best] >= self.config.echo_correlation:  # an echo shows quickly: it is a copy
            audible = usable & (far[best] > self._floor)  # where the agent was loud at that delay
            if audible.sum() < 20:
                return
            ratio_db = 20.0 * np.log10((near[audible] + 1.0) / far[best, audible])
            low, gain_db, high = np.percentile(ratio_db, [25.0, 50.0, 75.0])
            gain = float(10 ** (gain_db / 20.0))
            if gain > self._margin:  # louder than any echo: other speech that shares the agent's rhythm
                return
            if high - low > self.ECHO_SPREAD_DB:  # not a copy: babble whose rhythm happens to match
                return
            self.echo_known = True
            self.echo_lag_slots = best
            self.echo_gain = gain
        elif corr[best] < self.config.echo_correlation * 0.7 and self._far_active_slots >= 100:
            # "no echo" needs more evidence: a wrong "none" would let the agent interrupt itself
            self.echo_known = True
            self.echo_lag_slots = None
            self.echo_gain = 0.0

    def _thresholds(self, t: float) -> tuple[float, float]:
        """How loud caller audio must be at clock time `t` to be more than echo, and than line noise."""
        slot = round(t * 100)
        if not self.echo_known:  # conservative until the echo path is known
            echo = self._reference.loudest(slot - self._max_lag, slot + 1) * self._margin
        elif self.echo_lag_slots is None:
            echo = 0.0
        else:
            centre = slot - self.echo_lag_slots
            echo = self._reference.loudest(centre - 2, centre + 2) * self.echo_gain * self._excess
        return max(self._floor, echo), self.noise_level

    def _classify(self, frame: bytes, t: float, level: float) -> tuple[bool, bool, bool, bool]:
        """(caller speech, louder than echo and noise, firm, clear): what the decision needs of one
        10 ms frame (bargein_decide.py says what each is for)."""
        if self._noise_slots < self.EARLY_SLOTS:  # the line's first 200 ms: nothing to compare with yet
            return False, False, False, False
        echo, noise = self._thresholds(t)
        loud = level > echo and level > noise * self._active
        if level <= echo or level <= noise * self._snr:
            if level >= self._floor and self._vad.is_speech(frame, 8000):
                self.frames_gated += 1
            return False, loud, False, False
        speech = self._vad.is_speech(frame, 8000)
        firm = speech and level > self.noise_peak * self._firm
        busy = self.noise_peak > self.noise_level * self._busy  # babble, not steady noise
        return speech, loud, firm, firm and (not busy or level > self.noise_peak * self._clear)


class ResponseWords:
    """When each character of each agent response is spoken, from the agent's TextAlignment."""

    def __init__(self, keep: int = 8) -> None:
        self._ms: dict[int, float] = {}
        self._chars: dict[int, list[tuple[float, str]]] = {}
        self._keep = keep

    def note(self, chunk: agent_pb2.AudioChunk, duration_ms: float) -> None:
        rid = chunk.response_id
        offset = self._ms.get(rid, 0.0)
        self._ms[rid] = offset + duration_ms
        if chunk.HasField("alignment"):
            self._chars.setdefault(rid, []).extend(
                (offset + start, char)
                for char, start in zip(chunk.alignment.chars, chunk.alignment.char_start_ms, strict=False)
            )
        for old in sorted(self._ms)[: -self._keep]:  # by count: reply ids may jump
            self._ms.pop(old, None)
            self._chars.pop(old, None)

    @property
    def latest(self) -> int:
        """The newest response any audio arrived for (0 before any)."""
        return max(self._ms, default=0)

    def heard(self, response_id: int, heard_ms: int) -> str:
        return "".join(c for start, c in self._chars.get(response_id, []) if start < heard_ms).strip()


class BargeInController:
    """Carries out barge-in on one call: local decisions and the agent's own interruptions.

    Whichever comes first wins and the other becomes a no-op: a local pause already cleared the
    provider's buffer, so a racing agent interruption only drops what was held; an agent interruption
    for a response media already stopped changes nothing. Audio of interrupted responses is refused
    from then on (`accepts`), so nothing of a cut-off reply leaks after the clear.
    """

    def __init__(
        self,
        detector: BargeInDetector,
        playout: Playout,
        clock: Clock,
        send_clear: Callable[[], Awaitable[None]],
        tell_agent: Callable[[agent_pb2.CallerInterrupted], None],
        reset_audio: Callable[[], None],
    ) -> None:
        self.detector = detector
        self.words = ResponseWords()
        self._playout = playout
        self._clock = clock
        self._send_clear = send_clear
        self._tell_agent = tell_agent
        self._reset_audio = reset_audio
        self._paused: ClearResult | None = None
        self._min_response_id = 0

    def accepts(self, response_id: int) -> bool:
        """False for audio of a response the caller interrupted."""
        return response_id >= self._min_response_id

    @property
    def paused(self) -> bool:
        return self._paused is not None

    async def caller_audio(self, pcm8k: bytes, start: float) -> None:
        for verdict in self.detector.feed(pcm8k, start, self._playout.is_playing):
            await self._apply(verdict)

    async def _apply(self, verdict: Verdict) -> None:
        if verdict.decision is Decision.PAUSE:
            self._paused = self._playout.hold()
            await self._send_clear()
            BARGE_IN_LATENCY.labels("local").observe(max(0.0, self._clock.now() - verdict.onset))
        elif verdict.decision is Decision.RESUME and self._paused is not None:
            self._paused = None
            self._playout.resume()
            BARGE_IN_RESUMES.inc()
            log.info("caller sound was not an interruption: the agent resumes")
        elif verdict.decision is Decision.CONFIRM and self._paused is not None:
            paused, self._paused = self._paused, None
            self._playout.clear()
            self._reset_audio()
            # The clear dropped every response queued, not only the one playing: none may resume.
            self._min_response_id = max(self._min_response_id, paused.response_id + 1, self.words.latest + 1)
            heard_text = self.words.heard(paused.response_id, paused.heard_ms)
            BARGE_INS.labels("local").inc()
            log.info(  # the words themselves are conversation text: the agent gets them, logs do not
                "barge-in: the caller cut in on response %d after %d ms (%d characters heard)",
                paused.response_id,
                paused.heard_ms,
                len(heard_text),
            )
            self._tell_agent(
                agent_pb2.CallerInterrupted(
                    response_id=paused.response_id, heard_ms=paused.heard_ms, heard_text=heard_text
                )
            )

    async def agent_interrupted(self, response_id: int) -> None:
        """The agent heard the caller cut in on `response_id` (and everything before it)."""
        if response_id < self._min_response_id:
            return  # local barge-in already stopped this response
        self._min_response_id = response_id + 1
        held = self._paused is not None
        if not (held or self._playout.is_playing):
            return
        self._paused = None
        self.detector.reset()
        result = self._playout.clear()
        self._reset_audio()
        BARGE_INS.labels("agent").inc()
        log.info("agent interruption: response %d heard for %d ms", result.response_id, result.heard_ms)
        if not held:  # a local pause already cleared the provider's buffer
            await self._send_clear()
