"""Decide once: what one caller utterance over the agent does to the agent's reply.

The onset detector (bargein.py) says, every 10 ms, whether the caller's line carries the caller's
speech (`speech`: webrtcvad and the echo/noise gate), whether that speech is also above the line's
loud moments (`firm`: babble's peaks do not pass), whether it stands out enough to mark where the
caller's own voice starts (`clear`: on a line busy with babble, further above them than `firm`),
and whether the line is at least louder than echo
and noise (`active`: level alone, a looser test that keeps an utterance together across the quiet
syllables noise hides). This module turns those frames into at most one outcome per utterance:

* **Pause at onset** (`onset_ms` of speech in `onset_window_ms`): the caller stops hearing the agent
  within ~100 ms, as a person stops when talked over.
* **Confirm** only when the speech outlasts a backchannel: "mm-hm", "yeah", "okay" are over within
  `backchannel_ms` of their first clear frame, so firm speech after it (`late_ms` of it within
  `late_window_ms`, and `confirm_ms` since the onset in all) means "stop". Speech that noise makes
  sparse is confirmed at `decide_ms` if it filled `late_share` of the frames after that window.
  Nothing in between resumes the agent: gaps between syllables or words only count as the utterance
  going on until it has been quiet (not even `active`) for `release_ms`.
* **Resume** when the utterance ended before it proved to be more than a backchannel, or at the
  latest `decide_ms` after the onset.
* **Decide once.** After a resume, the same utterance (speech again within `credit_ms`) cannot pause
  the agent again: it is watched without a clear and, if it outlasts a backchannel on its own, stops
  the agent once (pause and confirm together). A reply is thus paused-resumed-cut at most once by one
  utterance, and never stutters. Babble can keep such an utterance open for long: firm speech after
  `REANCHOR_GAP_S` without any is a new sound ("yeah" after the murmur) and starts the backchannel
  window again, so that it too must outlast a backchannel on its own.

The decision therefore comes at most `decide_ms` after the onset (a sustained interruption:
`backchannel_ms` plus `late_ms`). Pure logic on the caller-side clock: no I/O, no time of its own.
"""

from __future__ import annotations

import collections
import enum
import math
from dataclasses import dataclass

from .config import BargeInConfig

FRAME_MS = 10
#: In an utterance being watched after a resume, firm speech after this long without any starts the
#: backchannel window again (see DecideOnce.step).
REANCHOR_GAP_S = 0.2


class Decision(enum.Enum):
    PAUSE = "pause"  # stop agent playback now (clear), keep its audio
    CONFIRM = "confirm"  # the caller is really talking: drop the agent's audio, tell the agent
    RESUME = "resume"  # false alarm: play the agent's audio again from where the caller stopped hearing it


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    at: float  # clock time of the decision
    onset: float  # clock time the caller's speech began


class _State(enum.Enum):
    LISTENING = "listening"  # no utterance, or one that ended
    PENDING = "pending"  # paused at an onset, deciding
    WATCHING = "watching"  # the utterance came back after a resume: deciding without a pause


def _frames(ms: int) -> int:
    return max(1, math.ceil(ms / FRAME_MS))


class DecideOnce:
    """Frame-by-frame decisions for one call; see the module docstring."""

    def __init__(self, config: BargeInConfig) -> None:
        self._onset_frames = _frames(config.onset_ms)
        self._window = _frames(config.onset_window_ms)
        self._confirm_frames = _frames(config.confirm_ms)
        self._late_frames = _frames(config.late_ms)
        self._release_frames = _frames(config.release_ms)
        self._backchannel_s = config.backchannel_ms / 1000.0
        self._decide_s = config.decide_ms / 1000.0
        self._credit_s = config.credit_ms / 1000.0
        self._window_frames = _frames(config.late_window_ms)
        self._late_window_s = config.late_window_ms / 1000.0
        self._late_share = config.late_share
        self._late_window: collections.deque[bool] = collections.deque()  # late speech, last frames
        self._recent: list[float | None] = []  # onset window: start time of each speech frame, or None
        self.reset()

    @property
    def paused(self) -> bool:
        return self._state is _State.PENDING

    @property
    def deciding(self) -> bool:
        """An utterance is being judged (paused, or watched after a resume)."""
        return self._state is not _State.LISTENING

    def reset(self) -> None:
        """Forget everything (after a confirm, or when the agent's interruption settled the matter)."""
        self._state = _State.LISTENING
        self._recent.clear()
        self._onset = self._deadline = self._late_from = self._last_firm = self._last_call = 0.0
        self._anchored = False
        self._speech = self._late = self._quiet = 0
        self._late_seen = self._late_total = 0
        self._late_window.clear()
        self._credit_until = -1.0

    def idle(self) -> None:
        """The agent is not talking: an onset in progress is forgotten (a resumed utterance too)."""
        if self._state is not _State.PENDING:
            self._state = _State.LISTENING
            self._recent.clear()
            self._credit_until = -1.0

    def step(
        self, t: float, speech: bool, active: bool, firm: bool | None = None, clear: bool | None = None
    ) -> list[Verdict]:
        """One 10 ms frame starting at clock time `t` (`firm` defaults to `speech`, `clear` to `firm`)."""
        end = t + FRAME_MS / 1000.0
        if self._state is _State.LISTENING:
            return self._listen(t, end, speech)
        # An utterance is under way: count it, then see whether it has proved itself or ended.
        self._speech += speech
        firm = speech if firm is None else firm
        clear = firm if clear is None else clear
        if clear and not self._anchored:  # the caller's own voice starts here, not at a murmur before it
            self._anchored = True
            self._late_from = max(self._late_from, t + self._backchannel_s)
        elif firm and self._state is _State.WATCHING and t - self._last_firm >= REANCHOR_GAP_S:
            # A new sound after a gap, in an utterance already let go once: babble that kept it alive
            # and a "yeah" after it are two sounds, and the "yeah" must outlast a backchannel itself.
            self._late_from = t + self._backchannel_s
            # ...within bounds: babble must not keep an utterance (and the frozen noise floor) open.
            self._deadline = min(max(self._deadline, self._late_from + self._late_window_s), self._last_call)
            self._late = self._late_seen = self._late_total = 0
            self._late_window.clear()
        if firm:
            self._last_firm = t
        late = firm and t >= self._late_from
        if t >= self._late_from:
            self._late_seen += 1
            self._late_total += late
        self._late_window.append(late)
        if len(self._late_window) > self._window_frames:
            self._late -= self._late_window.popleft()
        self._late += late
        self._quiet = 0 if (speech or active) else self._quiet + 1
        if self._speech >= self._confirm_frames and self._late >= self._late_frames:
            return self._confirm(end)
        seen = self._late_seen
        sustained = seen >= self._window_frames and self._late_total >= self._late_share * seen
        if t >= self._deadline and sustained and self._state is _State.PENDING:
            return self._confirm(end)  # still talking, if sparsely (noise hides syllables): not "mm-hm"
        if self._quiet >= self._release_frames or t >= self._deadline:
            return self._release(end)
        return []

    def _listen(self, t: float, end: float, speech: bool) -> list[Verdict]:
        self._recent.append(t if speech else None)
        del self._recent[: -self._window]
        hits = [start for start in self._recent if start is not None]
        if len(hits) < self._onset_frames:
            return []
        self._recent.clear()
        self._quiet = 0
        if t <= self._credit_until:  # the utterance that was just let go, going on: no second pause
            # It must outlast a backchannel on its own: "mm-hm ... yeah" is two of them, not "stop".
            self._begin(_State.WATCHING, hits[0], t + self._decide_s)
            self._speech += len(hits)
            return []
        self._onset = hits[0]
        self._begin(_State.PENDING, hits[0], self._onset + self._decide_s)
        self._speech = len(hits)
        return [Verdict(Decision.PAUSE, end, self._onset)]

    def _begin(self, state: _State, first_speech: float, deadline: float) -> None:
        self._state, self._deadline = state, deadline
        self._last_call = deadline + self._backchannel_s + self._late_window_s  # one re-anchored sound
        self._late_from, self._anchored = first_speech + self._backchannel_s, False
        self._late = self._late_seen = self._late_total = 0
        self._late_window.clear()

    def _confirm(self, end: float) -> list[Verdict]:
        onset, watching = self._onset, self._state is _State.WATCHING
        self.reset()
        confirm = Verdict(Decision.CONFIRM, end, onset)
        return [Verdict(Decision.PAUSE, end, onset), confirm] if watching else [confirm]

    def _release(self, end: float) -> list[Verdict]:
        was_pending = self._state is _State.PENDING
        self._state = _State.LISTENING
        self._recent.clear()
        if not was_pending:  # the watched rest came to nothing: the next sound is a new utterance
            self._credit_until = -1.0
            return []
        # More of the same utterance may follow: for `credit_ms` it cannot pause the agent again.
        self._credit_until = end + self._credit_s
        return [Verdict(Decision.RESUME, end, self._onset)]
