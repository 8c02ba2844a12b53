"""The pacer on a virtual clock: lead, cadence, drift, stalls, marks, clears and "what was heard"."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator

import pytest
from harness.virtual_clock import VirtualClock

from voicebridge.media.config import PlayoutConfig
from voicebridge.media.playout import Playout
from voicebridge.v1 import media_pb2

FRAME = 160  # 20 ms of mu-law


class Sink:
    """What the edge would receive: (virtual time, payload, mark) per frame, and clears."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.frames: list[tuple[float, bytes, str]] = []

    async def emit(self, message: media_pb2.CallResponse) -> None:
        self.frames.append((self.clock.now(), message.audio.payload, message.audio.mark))

    @property
    def marks(self) -> list[str]:
        return [m for _, _, m in self.frames if m]


@pytest.fixture
async def rig() -> AsyncIterator[tuple[VirtualClock, Sink, Playout]]:
    clock = VirtualClock()
    sink = Sink(clock)
    # tick_ms=0: frames leave exactly when due, the schedule these tests check (the shared tick is
    # tested on its own below).
    config = PlayoutConfig(frame_ms=20, lead_ms=60, mark_interval_ms=100, tick_ms=0)
    playout = Playout(clock, sink.emit, config)
    task = asyncio.create_task(playout.run())
    await clock.settle()
    yield clock, sink, playout
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def audio(ms: int, value: int = 0x10) -> bytes:
    return bytes([value]) * (8 * ms)


async def test_a_talk_spurt_starts_with_the_lead_then_runs_in_real_time(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(1000), response_id=1)
    await clock.settle()
    # The frame that starts playing now plus 60 ms of lead leave at once (due at -60, -40, -20, 0 ms).
    assert len(sink.frames) == 4
    await clock.advance(0.5)
    times = [t for t, _, _ in sink.frames]
    # From then on, frame k leaves at exactly k*20 ms - lead: no drift.
    assert times == pytest.approx([max(0.0, k * 0.02 - 0.06) for k in range(len(times))], abs=1e-9)
    assert len(sink.frames) == 29  # every frame due by t=0.5: k*20 ms - 60 ms <= 500 ms


async def test_frames_never_leave_more_than_40_ms_apart_while_the_agent_talks(rig) -> None:
    clock, sink, playout = rig
    for _ in range(8):  # TTS arrives in bursts of 250 ms, faster than real time
        playout.enqueue(audio(250), response_id=1)
        await clock.advance(0.1)
    await clock.advance(2.5)
    times = [t for t, _, _ in sink.frames]
    assert len(times) == 100
    assert max(b - a for a, b in itertools.pairwise(times)) <= 0.040


async def test_a_stalled_loop_restarts_with_the_lead_instead_of_bursting_the_backlog(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(2000), response_id=1)
    await clock.advance(0.2)
    sent_before = len(sink.frames)
    await clock.jump(0.5)  # the event loop was blocked for half a second
    assert len(sink.frames) - sent_before == 4  # the lead again, not 25 frames of backlog
    assert playout.stats.stalls == 1


async def test_frames_carry_marks_at_each_response_start_every_100_ms_and_before_a_pause(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(300), response_id=1)
    playout.enqueue(audio(100), response_id=2)
    await clock.advance(0.6)
    marked = [i for i, (_, _, m) in enumerate(sink.frames) if m]
    # response 1: frames 0..14 (first, every 5th frame = 100 ms, last); response 2: frames 15..19
    assert marked == [0, 5, 10, 14, 15, 19]
    assert all(len(p) == FRAME for _, p, _ in sink.frames)


async def test_a_frame_never_spans_two_responses(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(30, 0x11), response_id=1)
    playout.enqueue(audio(30, 0x22), response_id=2)
    await clock.advance(0.2)
    payloads = [p for _, p, _ in sink.frames]
    assert payloads == [audio(20, 0x11), audio(10, 0x11), audio(20, 0x22), audio(10, 0x22)]


async def test_heard_time_follows_mark_echoes_not_what_was_sent(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(1000), response_id=7)
    await clock.advance(0.3)  # 360 ms sent (lead), nothing echoed yet
    assert playout.heard_ms(7) == 0
    playout.on_mark(sink.marks[1])  # the mark after 120 ms of audio came back
    assert playout.heard_ms(7) == 120
    await clock.advance(0.05)  # between echoes, playback advances in real time
    assert playout.heard_ms(7) == 170


async def test_clear_drops_queued_audio_and_cleared_marks_do_not_count_as_played(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(1000), response_id=3)
    await clock.advance(0.2)
    playout.on_mark(sink.marks[0])
    result = playout.clear()
    assert result.response_id == 3
    assert result.was_playing
    assert result.heard_ms == 20  # the first frame's mark came back just now; nothing more is known
    assert not playout.is_playing
    frames = len(sink.frames)
    for name in sink.marks[1:]:  # Twilio echoes every pending mark after a clear
        playout.on_mark(name)
    assert playout.stats.marks_cleared == len(sink.marks) - 1
    assert playout.heard_ms(3) == result.heard_ms
    await clock.advance(0.2)
    assert len(sink.frames) == frames  # nothing of the cleared response is sent afterwards


async def test_drained_waits_for_the_last_mark_to_come_back(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(100), response_id=1)
    waiter = asyncio.create_task(playout.drained())
    await clock.advance(0.2)
    assert not waiter.done()  # everything sent, but the caller may not have heard it yet
    for name in sink.marks:
        playout.on_mark(name)
    await clock.settle()
    assert waiter.done()


async def test_unknown_and_stale_marks_are_ignored(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(200), response_id=1)
    await clock.advance(0.2)
    playout.on_mark("not-ours")
    assert playout.stats.marks_played == 0
    playout.on_mark(sink.marks[1])
    playout.on_mark(sink.marks[0])  # arrives late, after a later mark: already accounted
    assert playout.stats.marks_played == 2


def ramp(ms: int) -> bytes:
    """Audio whose every byte says where it is, to check what is replayed."""
    return bytes(i % 251 for i in range(8 * ms))


async def test_hold_then_resume_replays_from_exactly_where_the_caller_stopped_hearing(rig) -> None:
    clock, sink, playout = rig
    speech = ramp(1000)
    playout.enqueue(speech, response_id=4)
    await clock.advance(0.2)
    playout.on_mark(sink.marks[1])  # the caller has heard the first 120 ms (the second mark)...
    await clock.advance(0.03)  # ...and 30 ms more since that echo
    held = playout.hold()
    assert held.heard_ms == 150
    assert not playout.is_playing
    sent_before = len(sink.frames)
    playout.enqueue(ramp(100), response_id=4)  # the agent keeps talking during the pause
    await clock.advance(0.3)
    assert len(sink.frames) == sent_before  # nothing plays while held
    playout.resume()
    await clock.advance(2.0)
    replay = b"".join(p for _, p, _ in sink.frames[sent_before:])
    assert replay == speech[150 * 8 :] + ramp(100)
    assert playout.stats.resumes == 1


async def test_hold_then_clear_drops_everything_held(rig) -> None:
    clock, sink, playout = rig
    playout.enqueue(audio(1000), response_id=5)
    await clock.advance(0.1)
    playout.hold()
    playout.enqueue(audio(200), response_id=5)
    result = playout.clear()
    assert result.response_id == 5
    sent = len(sink.frames)
    playout.resume()  # nothing left to resume
    await clock.advance(0.5)
    assert len(sink.frames) == sent
    waiter = asyncio.create_task(playout.drained())
    for name in sink.marks:
        playout.on_mark(name)
    await clock.settle()
    assert waiter.done()


async def play_on_a_loaded_loop(config: PlayoutConfig, calls: int, seed: int) -> list[Sink]:
    """`calls` pacers, 3 s of agent audio each, on one loop whose ticks arrive 1-15 ms apart at random
    (nothing runs between ticks: the other calls hold the loop); what each call's edge received."""
    clock = VirtualClock()
    sinks = [Sink(clock) for _ in range(calls)]
    playouts = [Playout(clock, sink.emit, config) for sink in sinks]
    tasks = [asyncio.create_task(p.run()) for p in playouts]
    rng = random.Random(seed)
    for i, playout in enumerate(playouts):
        playout.enqueue(audio(3000), response_id=i + 1)
    elapsed = 0.0
    while elapsed < 3.2:
        step = rng.uniform(0.001, 0.015)
        await clock.jump(step)
        elapsed += step
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return sinks


async def test_frames_stay_within_40_ms_for_every_call_while_the_loop_is_loaded() -> None:
    """Thirty calls share one event loop whose ticks arrive up to 15 ms late (a busy loop)."""

    sinks = await play_on_a_loaded_loop(PlayoutConfig(frame_ms=20), calls=30, seed=4)
    for sink in sinks:
        times = [t for t, _, _ in sink.frames]
        assert len(times) == 150
        assert max(b - a for a, b in itertools.pairwise(times)) <= 0.040


async def test_with_a_shared_tick_every_call_sends_on_the_same_instants_never_late() -> None:
    """Calls whose talk spurts start at unrelated times still send on one 20 ms grid (one gRPC
    message per tick for all of them), each frame at most one tick before it was due."""
    clock = VirtualClock()
    sinks = [Sink(clock) for _ in range(5)]
    playouts = [
        Playout(clock, sink.emit, PlayoutConfig(frame_ms=20, lead_ms=60, tick_ms=20)) for sink in sinks
    ]
    tasks = [asyncio.create_task(p.run()) for p in playouts]
    starts = {}
    for i, playout in enumerate(playouts):
        await clock.advance(0.0037 * (i + 1))  # unaligned starts
        starts[i] = clock.now()
        playout.enqueue(audio(1000), response_id=1)
        await clock.settle()
    await clock.advance(1.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for i, sink in enumerate(sinks):
        times = [t for t, _, _ in sink.frames]
        assert len(times) == 50
        for k, t in enumerate(times):
            due = starts[i] + k * 0.02 - 0.06
            assert t <= max(due, starts[i]) + 1e-9  # never later than without the tick
            assert t >= due - 0.02 - 1e-9  # at most one tick early
            if t > starts[i] + 1e-9:  # paced frames (not the lead sent at the start) sit on the grid,
                assert (t + 1e-9) % 0.02 <= 0.001 + 2e-9  # give or take the virtual clock's 1 ms step
        assert max(b - a for a, b in itertools.pairwise(times)) <= 0.040


# -- the default frame size (60 ms messages): the buffer never runs dry, the lead stays bounded -----


def _playout_timeline(frames: list[tuple[float, bytes, str]]) -> tuple[list[float], list[float]]:
    """For each frame: when it left, and when the caller's buffer would have played out everything
    sent before it (playback starts with the first frame and runs in real time while fed)."""
    left, runs_out = [], []
    played_to = frames[0][0]
    for t, payload, _ in frames:
        left.append(t)
        runs_out.append(played_to)
        played_to = max(played_to, t) + len(payload) / 8000
    return left, runs_out


@pytest.mark.parametrize("frame_ms", [20, 60])
async def test_frames_arrive_before_the_buffer_runs_dry_and_at_most_lead_plus_a_frame_ahead(
    frame_ms: int,
) -> None:
    """Ten calls on a loop whose ticks arrive up to 15 ms late. Whatever the frame size, each frame
    leaves before what was sent ahead of it has played (no gap), and what waits in Twilio's buffer
    when it arrives never exceeds the lead plus one tick: with it, at most one frame more is what a
    clear has to flush."""
    config = PlayoutConfig(frame_ms=frame_ms)
    sinks = await play_on_a_loaded_loop(config, calls=10, seed=7)
    bound_s = (config.lead_ms + config.tick_ms) / 1000
    for sink in sinks:
        assert sum(len(p) for _, p, _ in sink.frames) == 3000 * 8
        assert {len(p) for _, p, _ in sink.frames} == {frame_ms * 8}
        left, runs_out = _playout_timeline(sink.frames)
        for t, dry_at in zip(left[1:], runs_out[1:], strict=True):
            assert t <= dry_at + 1e-9  # the buffer still held audio when this frame arrived
            assert dry_at - t <= bound_s + 1e-9  # ...and never more than the bound


@pytest.mark.parametrize("frame_ms", [20, 60])
async def test_after_a_clear_nothing_more_is_sent_whatever_the_frame_size(frame_ms: int) -> None:
    clock = VirtualClock()
    sink = Sink(clock)
    playout = Playout(clock, sink.emit, PlayoutConfig(frame_ms=frame_ms))
    task = asyncio.create_task(playout.run())
    playout.enqueue(audio(2000), response_id=1)
    await clock.advance(0.5)
    sent = len(sink.frames)
    result = playout.clear()
    await clock.advance(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(sink.frames) == sent
    assert result.dropped_ms == 2000  # no mark came back: nothing sent counts as heard


async def test_every_frame_says_where_it_ends_in_its_reply_even_across_a_hold_and_resume() -> None:
    """PlayAudio.position: the reply and the µs of it at the end of the payload (what an edge tells a
    replacement media was sent); a reply continued from elsewhere counts from where it began; media's
    own prompt carries none; `heard_position` follows the marks echoed as played."""
    clock = VirtualClock()
    plays: list[media_pb2.PlayAudio] = []

    async def emit(message: media_pb2.CallResponse) -> None:
        plays.append(message.audio)

    config = PlayoutConfig(frame_ms=20, lead_ms=60, mark_interval_ms=100, tick_ms=0)
    playout = Playout(clock, emit, config, own_response_ids=frozenset({99}))
    task = asyncio.create_task(playout.run())
    try:
        reply = ramp(1500)
        begun = 500 * 8  # the first 500 ms were played by another media
        playout.continue_reply(4, 500_000)
        playout.enqueue(reply[begun : begun + 4000], response_id=4)
        await clock.advance(0.2)
        first_mark = next(p for p in plays if p.mark)
        playout.on_mark(first_mark.mark)
        assert playout.heard_position == (4, first_mark.position.offset_us)
        await clock.advance(0.03)
        playout.hold()
        playout.enqueue(reply[begun + 4000 :], response_id=4)
        playout.resume()
        await clock.advance(2.0)
        playout.enqueue(b"\x01" * 800, response_id=99)
        await clock.advance(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    ours = [p for p in plays if p.position.response_id == 4]
    assert len(ours) == len(plays) - sum(1 for p in plays if p.payload == b"\x01" * len(p.payload))
    for play in ours:
        end = play.position.offset_us // 125
        assert play.position.offset_us % 125 == 0
        assert reply[end - len(play.payload) : end] == play.payload
    assert ours[-1].position.offset_us == 1500 * 1000
    assert all(not p.HasField("position") for p in plays if p.payload == b"\x01" * len(p.payload))
