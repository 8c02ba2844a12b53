"""What the agent sent a held conversation's media, kept so a re-attaching stream resumes exactly.

Why: when a Converse stream breaks, the agent does not know how much of what it sent reached the
caller. The stream that re-attaches says where the caller is (`SessionAttach.resume_from`, or the
old stream's `Detach.heard`), and the agent sends from that point: the rest of the reply it falls in,
then everything after. So the log keeps every message that left the backend, in order, audio with
its place in its reply (bytes from the reply's first sample), bounded by audio duration and entry
count. While a stream is attached the oldest entries give way; what arrives during a hold must fit
(`overflowed` ends the hold). Audio of a reply the caller cut into (or the agent interrupted) is
dropped: media refuses it anyway, so it must not come back on a resume.

Pure state, no I/O, no clock: table-tested in tests/agent/test_replay_log.py.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from voicebridge.v1 import agent_pb2, common_pb2

MAX_REPLY_IDS = 64  # replies whose running offset is remembered (more than the log ever holds)


# What a resume sends: (the message to send, the logged message it comes from).
Resend = tuple[agent_pb2.ConverseResponse, agent_pb2.ConverseResponse]


def bytes_per_sample(fmt: common_pb2.AudioFormat) -> int:
    return 2 if fmt.encoding == common_pb2.AUDIO_ENCODING_PCM_S16LE else 1


def us_to_bytes(offset_us: int, fmt: common_pb2.AudioFormat) -> int:
    """A reply offset in µs as bytes of `fmt`, on the nearest sample boundary."""
    samples = (offset_us * fmt.sample_rate_hz + 500_000) // 1_000_000
    return samples * bytes_per_sample(fmt)


def bytes_to_us(nbytes: int, fmt: common_pb2.AudioFormat) -> int:
    return nbytes // bytes_per_sample(fmt) * 1_000_000 // fmt.sample_rate_hz


@dataclass(frozen=True)
class Point:
    """A place in the agent's audio: reply `response_id`, `offset` bytes from its first sample."""

    response_id: int
    offset: int


@dataclass
class _Entry:
    message: agent_pb2.ConverseResponse
    audio: bool
    response_id: int = 0
    start: int = 0  # bytes into its reply
    end: int = 0


class ReplayLog:
    def __init__(self, fmt: common_pb2.AudioFormat, max_audio_s: float, max_entries: int = 2000) -> None:
        self.format = fmt
        self.max_audio_bytes = int(max_audio_s * fmt.sample_rate_hz) * bytes_per_sample(fmt)
        self.max_entries = max_entries
        self._entries: collections.deque[_Entry] = collections.deque()
        self._audio_bytes = 0
        self._offsets: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._held = 0  # entries noted since the hold began (never trimmed: they are the caller's)
        self.holding = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def audio_bytes(self) -> int:
        return self._audio_bytes

    def note(self, message: agent_pb2.ConverseResponse) -> None:
        """A message left the backend (towards media, or into the hold)."""
        if message.WhichOneof("event") == "audio":
            rid = message.audio.response_id
            start = self._offsets.pop(rid, 0)
            end = start + len(message.audio.data)
            self._offsets[rid] = end
            if len(self._offsets) > MAX_REPLY_IDS:
                self._offsets.popitem(last=False)
            entry = _Entry(message, True, rid, start, end)
            self._audio_bytes += end - start
        else:
            entry = _Entry(message, False)
            if message.WhichOneof("event") == "interruption":
                self.cut(message.interruption.response_id)
        self._entries.append(entry)
        if self.holding:
            self._held += 1
        self._trim()

    def cut(self, up_to_response_id: int) -> None:
        """Replies up to this id are refused by media (interrupted): their audio is never resent."""
        kept: collections.deque[_Entry] = collections.deque()
        held_dropped = 0
        for i, entry in enumerate(self._entries):
            if entry.audio and entry.response_id <= up_to_response_id:
                self._audio_bytes -= entry.end - entry.start
                if i >= len(self._entries) - self._held:
                    held_dropped += 1
                continue
            kept.append(entry)
        self._entries = kept
        self._held -= held_dropped

    def hold(self) -> None:
        """From now on nobody receives what is noted: it must fit, or `overflowed`."""
        self.holding, self._held = True, 0

    def release(self) -> None:
        """A stream took the conversation over: the log may give way again."""
        self.holding, self._held = False, 0
        self._trim()

    @property
    def overflowed(self) -> bool:
        return self._audio_bytes > self.max_audio_bytes or len(self._entries) > self.max_entries

    def _trim(self) -> None:
        while len(self._entries) > self._held and (
            self._audio_bytes > self.max_audio_bytes or len(self._entries) > self.max_entries
        ):
            entry = self._entries.popleft()
            if entry.audio:
                self._audio_bytes -= entry.end - entry.start

    def point_after(self, message: agent_pb2.ConverseResponse | None) -> Point | None:
        """Where the audio stands right after `message` (the last one a stream sent), or None when the
        log no longer has it."""
        if message is None:
            return Point(0, 0)
        last_audio: _Entry | None = None
        found = False
        for entry in reversed(self._entries):
            if entry.message is message:
                found = True
            if found and entry.audio:
                last_audio = entry
                break
        if not found:
            return None
        return Point(last_audio.response_id, last_audio.end) if last_audio else Point(0, 0)

    def replay(self, point: Point | None) -> list[Resend]:
        """What to send a stream that resumes at `point`: the rest of the reply it falls in (from the
        sample at `point.offset`), then everything after, each message once, as (message to send, the
        logged message it comes from). A point the log does not reach back to, or reply 0 (nothing
        heard yet), replays the whole log."""
        entries = list(self._entries)
        if point is None or point.response_id == 0:
            return [(e.message, e.message) for e in entries]
        # From the first audio past the point, trimmed to it when the point falls inside it (what came
        # before that chunk reached media with the audio the caller heard); when the point falls
        # between chunks, the control messages sent after the last audio before it come first.
        begin = 0
        for i, entry in enumerate(entries):
            if not entry.audio:
                continue
            if _before(entry, point):
                begin = i + 1
            else:
                if entry.response_id == point.response_id and entry.start < point.offset:
                    begin = i
                break
        out: list[Resend] = []
        for entry in entries[begin:]:
            if entry.audio and entry.response_id == point.response_id and entry.start < point.offset:
                out.append((_tail(entry, point.offset - entry.start, self.format), entry.message))
            else:
                out.append((entry.message, entry.message))
        return out


def _before(entry: _Entry, point: Point) -> bool:
    return entry.response_id < point.response_id or (
        entry.response_id == point.response_id and entry.end <= point.offset
    )


def _tail(entry: _Entry, skip: int, fmt: common_pb2.AudioFormat) -> agent_pb2.ConverseResponse:
    """The part of an audio message from `skip` bytes on, its alignment moved to match (characters
    that started before the cut are left out)."""
    audio = entry.message.audio
    tail = agent_pb2.AudioChunk(
        data=audio.data[skip:],
        format=audio.format,
        response_id=audio.response_id,
        received_unix_nanos=audio.received_unix_nanos,
    )
    skip_ms = bytes_to_us(skip, fmt) // 1000
    aligned = audio.alignment
    for char, start, duration in zip(
        aligned.chars, aligned.char_start_ms, aligned.char_duration_ms, strict=False
    ):
        if start >= skip_ms:
            tail.alignment.chars.append(char)
            tail.alignment.char_start_ms.append(start - skip_ms)
            tail.alignment.char_duration_ms.append(duration)
    return agent_pb2.ConverseResponse(audio=tail)
