"""One simulated caller of a load run (talk, wait for the reply, talk again) and the playback gaps in
what it heard."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

RATE = 8000
FRAME_BYTES = 160
GAP_S = 0.040
UTTERANCE_BREAK_S = 0.5


@dataclass
class CallResult:
    summary: dict[str, Any]
    heard_spans: list[tuple[int, int]]  # sample ranges of agent audio playing, as the caller heard it
    bytes_received: int
    voice_bytes_sent: int
    error: str | None = None


async def run_call(
    url: str, speech: bytes, seconds: float, start_delay: float, all_up: asyncio.Event | None
) -> CallResult:
    """Talk, wait for the reply to finish, talk again... for `seconds`; then wait for quiet, hang up."""
    await asyncio.sleep(start_delay)
    sid = f"CAload{os.getpid()}{time.monotonic_ns()}"
    caller = TwilioCaller(CallerConfig(url=url, call_sid=sid, keep_media=False))
    error = None
    try:
        await caller.connect()
        if all_up is not None:
            all_up.set()
        end = time.monotonic() + seconds
        await caller.wait_agent_quiet(0.3, timeout=15)  # the greeting
        while time.monotonic() < end and not caller.closed:
            heard = caller.samples_heard()
            await caller.speak(speech)
            await caller.wait_heard(heard / RATE + 0.1, timeout=15)  # the reply started
            await caller.wait_agent_quiet(0.4, timeout=30)  # ...and finished
        await caller.wait_agent_quiet(0.4, timeout=30)
    except Exception as exc:  # a failed call is a result, not a crash of the whole run
        error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await caller.hangup()
    voice = caller.media_frames_sent * FRAME_BYTES
    return CallResult(caller.summary(), caller.heard_spans(), caller.media_bytes_received, voice, error)


def gaps(spans: list[tuple[int, int]]) -> tuple[int, float]:
    """(holes in playback inside an utterance where frames were over 40 ms apart, the largest
    in-utterance frame spacing in seconds), from the sample spans during which agent audio played."""
    frame = FRAME_BYTES / RATE
    count, worst = 0, frame if spans else 0.0
    for (_, end), (start, _) in itertools.pairwise(spans):
        spacing = (start - end) / RATE + frame  # last frame before the hole -> first frame after it
        if spacing - frame >= UTTERANCE_BREAK_S:
            continue
        worst = max(worst, spacing)
        if spacing > GAP_S + 1e-9:
            count += 1
    return count, worst
