"""Agent audio to the caller: framing, real-time pacing, playback marks and "what was heard".

Agent audio arrives in bursts faster than real time. Sending it all at once would park seconds of
audio in Twilio's buffer, where a barge-in `clear` must throw it away and where it keeps playing if
a clear is late. So the pacer sends frames against an absolute monotonic schedule, a small lead ahead
of real time:

    frame k of a talk spurt is due at   anchor + k * frame_ms - lead_ms

and leaves at the last point of a process-wide grid (`tick_ms`) at or before that: every call's pacer
wakes on the same ticks, so one gRPC message carries all their frames to the edge.

A frame due in the past is sent at once; if the loop stalled so long that the provider's buffer ran
dry, the schedule restarts from now with the same lead instead of bursting the backlog (the caller
already heard the gap; a burst would only add latency).

Playback truth comes only from mark echoes: a mark is attached to the first frame of every response,
to the last frame before a pause, and at least every `mark_interval_ms`. Marks echoed after a clear
mean "cleared", not "played".
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from voicebridge.v1 import media_pb2

from .clock import Clock
from .config import PlayoutConfig
from .metrics import MARK_ACK_LAG, PLAYOUT_GAP, PLAYOUT_STALLS

log = logging.getLogger(__name__)

BYTES_PER_MS = 8  # mu-law 8 kHz
_KEEP_RESPONSES = 8  # responses whose accounting is kept


@dataclass
class _Segment:
    data: bytes
    response_id: int
    source_unix_nanos: int
    response_offset_ms: float  # where data[0] sits in its response
    offset: int = 0  # bytes of data already taken


@dataclass(frozen=True)
class _SentFrame:
    """A frame the provider may still be playing: kept until a mark proves it was heard."""

    payload: bytes
    stream_start_ms: float
    response_id: int
    response_offset_ms: float
    source_unix_nanos: int

    @property
    def stream_end_ms(self) -> float:
        return self.stream_start_ms + len(self.payload) / BYTES_PER_MS


@dataclass(frozen=True)
class _Mark:
    name: str
    position_ms: float  # stream position (ms of audio sent) at the end of the audio before the mark
    response_id: int
    first_of_response: bool
    sent_at: float
    reply_end_us: int = 0  # where that audio ends in its reply (PlayAudio.position)


@dataclass
class ClearResult:
    """What a clear interrupted: the response that was playing and how much of it the caller heard."""

    response_id: int
    heard_ms: int
    dropped_ms: int
    was_playing: bool


@dataclass
class PlayoutStats:
    marks_played: int = 0
    marks_cleared: int = 0
    stalls: int = 0
    clears: int = 0
    resumes: int = 0


class Playout:
    """Paces one call's agent audio (already mu-law 8 kHz) to the edge and accounts for playback.

    Positions are kept two ways: the stream position (ms of audio sent on this call, what marks
    measure) and, per response, the offset within that response (what "heard" means to the agent).
    """

    def __init__(
        self,
        clock: Clock,
        emit: Callable[[media_pb2.CallResponse], Awaitable[None]],
        config: PlayoutConfig | None = None,
        on_first_played: Callable[[int, float], None] | None = None,
        on_frame_sent: Callable[[bytes, float], None] | None = None,
        own_response_ids: frozenset[int] = frozenset(),
    ) -> None:
        """`own_response_ids`: media's own prompts (not agent audio): their frames carry no position."""
        self._clock = clock
        self._own = own_response_ids
        self._heard_position: tuple[int, int] | None = None  # (reply, µs) at the last mark played
        self._emit = emit
        self._cfg = config or PlayoutConfig()
        self._frame_bytes = self._cfg.frame_ms * BYTES_PER_MS
        self._segments: collections.deque[_Segment] = collections.deque()
        self._queued_bytes = 0
        self._response_length_ms: dict[int, float] = {}  # audio enqueued so far, per response
        self._wake = asyncio.Event()
        self._anchor: float | None = None  # clock time at which stream position `_anchor_pos_ms` plays
        self._anchor_pos_ms = 0.0
        self._sent_ms = 0.0  # stream position: ms of audio sent since the call started
        self._last_mark_pos = -1e9
        self._last_frame_at: float | None = None
        self._in_flight: collections.deque[_SentFrame] = collections.deque()
        self._pending: collections.deque[_Mark] = collections.deque()
        self._cleared: set[str] = set()
        self._played_pos_ms = 0.0
        self._played_at: float | None = None
        self._heard: dict[int, float] = {}  # response -> ms of it known heard
        self._current_response = 0
        self._started: set[int] = set()
        self._held: list[_Segment] | None = None
        self._mark_seq = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._on_first_played = on_first_played
        self._on_frame_sent = on_frame_sent
        self.stats = PlayoutStats()

    # -- input ----------------------------------------------------------------------------------

    def enqueue(self, ulaw: bytes, response_id: int, source_unix_nanos: int = 0) -> bool:
        """Queue agent audio; False (and nothing queued) when the pacing queue is full."""
        if not ulaw:
            return True
        if self._queued_bytes + len(ulaw) > self._cfg.max_queued_s * 8000:
            return False
        offset = self._response_length_ms.get(response_id, 0.0)
        self._response_length_ms[response_id] = offset + len(ulaw) / BYTES_PER_MS
        self._segments.append(_Segment(ulaw, response_id, source_unix_nanos, offset))
        self._queued_bytes += len(ulaw)
        self._drained.clear()
        self._wake.set()
        return True

    def continue_reply(self, response_id: int, offset_us: int) -> None:
        """This reply's audio continues one that began elsewhere (a re-attached conversation): its
        first byte here sits `offset_us` into it, so positions and "heard" count from its real start."""
        self._response_length_ms[response_id] = offset_us / 1000.0

    @property
    def heard_position(self) -> tuple[int, int] | None:
        """The agent audio the caller has heard, from the last mark echoed as played: (reply, µs into
        it), or None before any."""
        return self._heard_position

    def on_mark(self, name: str) -> None:
        """The provider echoed a mark: audio up to it has played (or was cleared)."""
        if name in self._cleared:
            self._cleared.discard(name)
            self.stats.marks_cleared += 1
            self._check_drained()
            return
        if not any(m.name == name for m in self._pending):
            log.debug("ignoring unknown or stale mark %r", name)
            return
        now = self._clock.now()
        while self._pending:
            mark = self._pending.popleft()
            MARK_ACK_LAG.observe(max(0.0, now - mark.sent_at))
            self._played_pos_ms = mark.position_ms
            self._played_at = now
            self.stats.marks_played += 1
            if mark.response_id not in self._own:
                self._heard_position = (mark.response_id, mark.reply_end_us)
            if mark.first_of_response and self._on_first_played:
                self._on_first_played(mark.response_id, now)
            if mark.name == name:
                break
        self._account_heard(self._played_pos_ms, forget=True)
        self._check_drained()

    def _account_heard(self, position_ms: float, forget: bool) -> None:
        """Credit in-flight frames up to a stream position as heard; optionally forget them."""
        for frame in self._in_flight:
            if frame.stream_start_ms >= position_ms:
                break
            heard = frame.response_offset_ms + min(frame.stream_end_ms, position_ms) - frame.stream_start_ms
            if heard > self._heard.get(frame.response_id, 0.0):
                self._heard[frame.response_id] = heard
        if forget:
            while self._in_flight and self._in_flight[0].stream_end_ms <= position_ms:
                self._in_flight.popleft()

    def _stop(self, keep: bool) -> ClearResult:
        now = self._clock.now()
        was_playing = self.is_playing
        response_id = self._current_response
        heard_pos = self.played_position_ms(now)
        self._account_heard(heard_pos, forget=False)
        held: list[_Segment] = []
        if keep:  # what the caller has not heard yet, in order: the unheard part of in-flight frames
            for frame in self._in_flight:
                cut = max(0, round((heard_pos - frame.stream_start_ms) * BYTES_PER_MS))
                if cut < len(frame.payload):
                    held.append(
                        _Segment(
                            frame.payload[cut:],
                            frame.response_id,
                            frame.source_unix_nanos,
                            frame.response_offset_ms + cut / BYTES_PER_MS,
                        )
                    )
        unheard_ms = max(0.0, self._sent_ms - heard_pos)
        dropped_ms = 0.0 if keep else self._queued_bytes / BYTES_PER_MS + unheard_ms
        held.extend(self._segments)
        self._segments.clear()
        self._queued_bytes = 0
        self._in_flight.clear()
        self._cleared.update(m.name for m in self._pending)
        self._pending.clear()
        # Everything sent is now accounted for; the next talk spurt starts a fresh schedule.
        self._played_pos_ms = self._sent_ms
        self._played_at = now
        self._anchor = None
        self._last_frame_at = None
        if keep:
            self._held = (self._held or []) + held
        else:
            self._held = None
        self._check_drained()
        return ClearResult(response_id, int(self._heard.get(response_id, 0.0)), int(dropped_ms), was_playing)

    def clear(self) -> ClearResult:
        """Stop playback now and drop the agent's audio. The caller sends ClearAudio to the edge."""
        self.stats.clears += 1
        return self._stop(keep=False)

    def hold(self) -> ClearResult:
        """Stop playback now but keep what the caller has not heard, for `resume()`."""
        return self._stop(keep=True)

    def resume(self) -> None:
        """Play held audio again from where the caller stopped hearing it (a false barge-in)."""
        if self._held is None:
            return
        held, self._held = self._held, None
        self.stats.resumes += 1
        arrived = list(self._segments)
        self._segments.clear()
        self._segments.extend(held + arrived)
        self._queued_bytes = sum(len(seg.data) - seg.offset for seg in self._segments)
        if self._segments:
            self._drained.clear()
            self._wake.set()
        self._check_drained()

    # -- state ----------------------------------------------------------------------------------

    @property
    def is_playing(self) -> bool:
        """True while agent audio is queued here or sits unplayed in the provider's buffer."""
        return self._held is None and (bool(self._segments) or bool(self._pending))

    @property
    def is_held(self) -> bool:
        return self._held is not None

    def played_position_ms(self, now: float | None = None) -> float:
        """Best estimate of the stream position the caller has heard up to, from mark echoes."""
        now = self._clock.now() if now is None else now
        if not self._pending or self._played_at is None:
            return self._played_pos_ms
        estimate = self._played_pos_ms + (now - self._played_at) * 1000.0
        return min(estimate, self._pending[-1].position_ms, self._sent_ms)

    def heard_ms(self, response_id: int, now: float | None = None) -> int:
        """How much of a response the caller has heard: mark echoes, plus real time since the last one."""
        heard = self._heard.get(response_id, 0.0)
        position = self.played_position_ms(now)
        for frame in self._in_flight:
            if frame.stream_start_ms >= position:
                break
            if frame.response_id == response_id:
                part = min(frame.stream_end_ms, position) - frame.stream_start_ms
                heard = max(heard, frame.response_offset_ms + part)
        return int(heard)

    async def drained(self) -> None:
        """Wait until everything queued has been sent and every mark has come back."""
        await self._drained.wait()

    def _check_drained(self) -> None:
        if not self._segments and not self._pending and self._held is None:
            self._drained.set()

    # -- pacing ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send frames until cancelled."""
        lead_s = self._cfg.lead_ms / 1000.0
        tick_s = self._cfg.tick_ms / 1000.0
        starved = True  # no audio was waiting: a late schedule then means a pause, not a stall
        while True:
            if not self._segments or self._held is not None:
                starved = True
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self._clock.now()
            played_out_at = (
                None
                if self._anchor is None
                else self._anchor + (self._sent_ms - self._anchor_pos_ms) / 1000.0
            )
            if played_out_at is None or now > played_out_at:
                # Start of a talk spurt, or the provider's buffer ran dry: play from now. The lead is
                # re-sent at once, never more, so a stalled loop cannot cause a burst beyond the lead.
                if played_out_at is not None and not starved:
                    self.stats.stalls += 1
                    PLAYOUT_STALLS.inc()
                self._anchor, self._anchor_pos_ms = now, self._sent_ms
                self._last_frame_at = None
                played_out_at = now
            starved = False
            due = played_out_at - lead_s
            if tick_s:
                due = math.floor(due / tick_s) * tick_s
            if now < due:
                await self._clock.sleep_until(due)
                continue
            await self._send_frame(now, due, played_out_at)

    def _take_frame(self) -> tuple[bytes, _Segment]:
        """Up to one frame of audio, never spanning two responses; returns it and its first segment."""
        first = self._segments[0]
        head = _Segment(
            b"",
            first.response_id,
            first.source_unix_nanos,
            first.response_offset_ms + first.offset / BYTES_PER_MS,
        )
        parts: list[bytes] = []
        need = self._frame_bytes
        while need and self._segments and self._segments[0].response_id == head.response_id:
            seg = self._segments[0]
            piece = seg.data[seg.offset : seg.offset + need]
            parts.append(piece)
            seg.offset += len(piece)
            need -= len(piece)
            head.source_unix_nanos = max(head.source_unix_nanos, seg.source_unix_nanos)
            if seg.offset >= len(seg.data):
                self._segments.popleft()
        frame = b"".join(parts)
        self._queued_bytes -= len(frame)
        return frame, head

    async def _send_frame(self, now: float, due: float, plays_at: float) -> None:
        frame, head = self._take_frame()
        response_id, source = head.response_id, head.source_unix_nanos
        # The bridge's added latency is counted from when the audio was both received and due to be
        # sent: holding TTS bursts back to real time is pacing, not delay.
        if source:
            source = max(source, time.time_ns() - int(max(0.0, now - due) * 1e9))
        first_of_response = response_id not in self._started
        if first_of_response:
            self._started.add(response_id)
            self._current_response = response_id
            # Only recent responses matter: keep the last few by count (ids may jump, e.g. ElevenLabs'
            # reply ids are chunk ids, so arithmetic on them would forget a reply still playing).
            for old in sorted(self._started)[:-_KEEP_RESPONSES]:
                self._started.discard(old)
                self._heard.pop(old, None)
                self._response_length_ms.pop(old, None)
        self._in_flight.append(_SentFrame(frame, self._sent_ms, response_id, head.response_offset_ms, source))
        # Offsets are whole multiples of 1/8 ms (a μ-law sample), exact in a float.
        reply_end_us = round((head.response_offset_ms + len(frame) / BYTES_PER_MS) * 1000)
        self._sent_ms += len(frame) / BYTES_PER_MS
        next_is_other = not self._segments or self._segments[0].response_id != response_id
        mark = ""
        if (
            first_of_response
            or next_is_other
            or self._sent_ms - self._last_mark_pos >= self._cfg.mark_interval_ms
        ):
            self._mark_seq += 1
            mark = f"m{self._mark_seq}"
            self._pending.append(
                _Mark(mark, self._sent_ms, response_id, first_of_response, now, reply_end_us)
            )
            self._last_mark_pos = self._sent_ms
        if self._last_frame_at is not None:
            PLAYOUT_GAP.observe(now - self._last_frame_at)
        self._last_frame_at = now
        if self._on_frame_sent:
            self._on_frame_sent(frame, plays_at)
        play = media_pb2.PlayAudio(payload=frame, mark=mark, source_unix_nanos=source)
        if response_id not in self._own:  # where the agent's audio stands: CallReattach.sent
            play.position.response_id = response_id
            play.position.offset_us = reply_end_us
        await self._emit(media_pb2.CallResponse(audio=play))
