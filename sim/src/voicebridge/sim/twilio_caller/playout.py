"""Twilio's playout buffer as the caller hears it, on a timeline of samples since the stream started.

Pure bookkeeping (the caller passes in "now" as a sample index): ``media`` payloads of any size go
into a FIFO played at exactly 8000 samples/s; a ``mark`` falls due once the audio queued before it has
played (at once if nothing is buffered); ``clear`` drops what has not played yet and makes every
pending mark due at once. What was heard (``samples_heard``, ``heard_ulaw``, ``heard_spans``,
``turns``) is read back from the same timeline, so it is exact."""

from __future__ import annotations

from dataclasses import dataclass

from .wire import RATE, SILENCE

TURN_GAP_S = 0.3


@dataclass
class _Segment:
    start: int  # sample index on the heard timeline
    audio: bytearray


class Playout:
    """The agent audio a caller has been sent, placed where it plays."""

    def __init__(self) -> None:
        self.segments: list[_Segment] = []
        self.buffer_end = 0  # sample index at which everything buffered will have played
        self.pending_marks: list[tuple[int, str]] = []  # (due sample index, name), FIFO; -1: flushed

    @property
    def has_audio(self) -> bool:
        return bool(self.segments)

    def play(self, audio: bytes, now: int) -> None:
        """Queue audio behind what is buffered (or from now, when the buffer has run dry)."""
        if not audio:
            return
        start = max(now, self.buffer_end)
        last = self.segments[-1] if self.segments else None
        if last is not None and last.start + len(last.audio) == start:
            last.audio += audio
        else:
            self.segments.append(_Segment(start, bytearray(audio)))
        self.buffer_end = start + len(audio)

    def mark(self, name: str, now: int) -> None:
        """A mark falls due when the audio queued before it has played."""
        self.pending_marks.append((max(now, self.buffer_end), name))

    def clear(self, now: int) -> None:
        """Drop the audio not played by `now`; every pending mark is due at once."""
        kept = []
        for s in self.segments:
            if s.start >= now:
                continue
            del s.audio[now - s.start :]
            kept.append(s)
        self.segments = kept
        self.buffer_end = min(self.buffer_end, now)
        for i, (_, name) in enumerate(self.pending_marks):
            self.pending_marks[i] = (-1, name)

    def pop_due_mark(self, now: int, *, force: bool = False) -> tuple[str, bool] | None:
        """The next mark due by `now` (any, with `force`): (name, whether a clear flushed it)."""
        if not self.pending_marks or not (self.pending_marks[0][0] <= now or force):
            return None
        due, name = self.pending_marks.pop(0)
        return name, due < 0

    def next_mark_due(self) -> int | None:
        """Sample index at which the first pending mark falls due (None when there is none)."""
        return self.pending_marks[0][0] if self.pending_marks else None

    # --- what was heard, up to `end` (now, or the hang-up)

    def samples_heard(self, end: int) -> int:
        return sum(max(0, min(s.start + len(s.audio), end) - s.start) for s in self.segments)

    def heard_ulaw(self, end: int) -> bytes:
        """Agent audio as played from stream start to `end`, μ-law silence (0xFF) elsewhere."""
        out = bytearray(SILENCE * end)
        for s in self.segments:
            stop = min(s.start + len(s.audio), end)
            if stop > s.start:
                out[s.start : stop] = s.audio[: stop - s.start]
        return bytes(out)

    def heard_spans(self, end: int) -> list[tuple[int, int]]:
        """Sample ranges [start, end) during which agent audio was playing, merged where they touch."""
        spans: list[tuple[int, int]] = []
        for s in self.segments:
            a, b = s.start, min(s.start + len(s.audio), end)
            if b <= a:
                continue
            if spans and spans[-1][1] >= a:
                spans[-1] = (spans[-1][0], max(spans[-1][1], b))
            else:
                spans.append((a, b))
        return spans


def turns(spans: list[tuple[int, int]], gap_s: float = TURN_GAP_S) -> list[tuple[float, float]]:
    """Runs of heard audio split by ≥ ``gap_s`` of nothing playing: (start_s, end_s) from stream start."""
    gap = round(gap_s * RATE)
    runs: list[list[int]] = []
    for a, b in spans:
        if runs and a - runs[-1][1] < gap:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    return [(a / RATE, b / RATE) for a, b in runs]
