"""Agent audio whose every byte's place can be read back from what the caller heard.

Why: a reply heard twice *whole* is found by counting it in the recording, but a failover that replays
the last 120 ms of a reply, or skips 80 ms of it, leaves no whole copy to count. Each reply here is
μ-law noise from a generator seeded with the reply's key, drawn from 64 moderate-level codes (never
silence, 0xFF / 0x7F), so any `WINDOW` consecutive bytes name the reply and the offset they came
from. Byte-exact transport is what the bridge does for μ-law agent audio (zero-transcoding pass-through),
so what the caller heard can be aligned against what the agent sent, byte by byte:

- `Heard.counts`: how many times each byte of each reply reached the caller (0: skipped, 2: twice);
- `Heard.stalls`: where the caller's playout of a reply paused mid-reply, and for how long (a heard gap
  inside a sentence, what a media replica's death costs).

Pure functions over bytes: table-tested in tests/sim/test_stamped_audio.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WINDOW = 8  # 48 bits of noise: a false match among the ~10^5 offsets of a run is ~10^-9
CODES = np.frombuffer(bytes(range(0x40, 0x60)) + bytes(range(0xC0, 0xE0)), np.uint8)
SILENCE = 0xFF


def stamped(key: int, n_bytes: int) -> bytes:
    """`n_bytes` of μ-law noise that is the reply `key`'s own."""
    rng = np.random.default_rng(key)
    return CODES[rng.integers(0, len(CODES), n_bytes)].tobytes()


@dataclass
class Run:
    """A stretch of one reply heard contiguously: `length` bytes from `offset`, from timeline byte `at`."""

    reply: str
    offset: int
    at: int
    length: int


@dataclass
class Heard:
    """What the caller heard, aligned to the replies the agent could have sent."""

    runs: list[Run] = field(default_factory=list)
    counts: dict[str, np.ndarray] = field(default_factory=dict)

    def repeated_bytes(self, reply: str | None = None) -> int:
        """Bytes heard more than once (each extra time counts)."""
        names = [reply] if reply is not None else list(self.counts)
        return int(sum(np.maximum(self.counts[n].astype(np.int64) - 1, 0).sum() for n in names))

    def distinct_bytes(self, reply: str) -> int:
        """Bytes of `reply` heard at least once."""
        return int((self.counts[reply] > 0).sum())

    def times_heard(self, reply: str) -> int:
        """How many times the most-heard byte of `reply` was heard (2: the reply, or part of it, twice)."""
        return int(self.counts[reply].max(initial=0))

    def stalls(self) -> list[tuple[int, int]]:
        """(timeline byte where the pause began, its length in bytes) for each pause between two runs
        that continue one reply (the second starts where the first ended)."""
        out = []
        last: dict[str, Run] = {}
        for run in self.runs:
            before = last.get(run.reply)
            if before is not None and run.offset == before.offset + before.length:
                pause = run.at - (before.at + before.length)
                if pause > 0:
                    out.append((before.at + before.length, pause))
            last[run.reply] = run
        return out


class Replies:
    """The replies the agent may send, by name, and the index that finds them in a recording."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        self.audio = replies
        self._where: dict[bytes, tuple[str, int]] = {}
        for name, audio in replies.items():
            for offset in range(len(audio) - WINDOW + 1):
                self._where.setdefault(audio[offset : offset + WINDOW], (name, offset))

    def align(self, heard: bytes) -> Heard:
        """`heard` (agent audio in the order it reached the caller, or the caller's timeline with
        silence where nothing played) as runs of the replies, and every reply byte's count."""
        out = Heard(counts={name: np.zeros(len(a), np.uint16) for name, a in self.audio.items()})
        i, end = 0, len(heard)
        while i <= end - WINDOW:
            hit = self._where.get(heard[i : i + WINDOW])
            if hit is None:
                i += 1
                continue
            name, offset = hit
            ref = self.audio[name]
            n = WINDOW
            while i + n < end and offset + n < len(ref) and heard[i + n] == ref[offset + n]:
                n += 1
            out.runs.append(Run(name, offset, i, n))
            out.counts[name][offset : offset + n] += 1
            i += n
        return out
