"""A call to the default stack (parrot backend): greeting, then the caller's words played back."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import numpy as np
from harness.audio import espeak_ulaw, normalized_xcorr_peak, ulaw_to_float
from harness.heard import played_audio
from harness.processes import BIN
from harness.stack import Stack

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller


async def test_parrot_greets_then_plays_the_callers_speech_back_after_they_stop(parrot_stack: Stack) -> None:
    speech = espeak_ulaw("Testing one two three, can you hear me?")
    async with TwilioCaller(CallerConfig(url=parrot_stack.media_ws_url)) as call:
        await call.wait_heard(1.0, timeout=10)  # the greeting is playing
        await call.wait_agent_quiet(0.5, timeout=15)  # ...and has finished
        greeting_samples = call.samples_heard()
        spoke_at = len(call.heard_ulaw)
        await call.speak(speech)
        await call.wait_heard((greeting_samples + 0.8 * len(speech)) / 8000, timeout=20)
        await call.wait_agent_quiet(0.5, timeout=15)
        summary = call.summary()

    assert summary["violations"] == []
    spans = [(a, b) for a, b in call.heard_spans() if a >= spoke_at]
    assert spans, "nothing was played back after the caller spoke"
    # The echo starts only once the caller has stopped talking: on the caller's timeline, where its
    # last words left, not when this coroutine ran again (late on a loaded machine).
    (stopped_at,) = call.speech_ends
    assert spans[0][0] >= stopped_at
    echo = ulaw_to_float(played_audio(call, since=spoke_at))
    coefficient, _ = normalized_xcorr_peak(ulaw_to_float(speech)[2000:10000], echo)
    assert coefficient > 0.8, f"the played-back audio does not match what the caller said ({coefficient:.2f})"
    assert np.isclose(sum(b - a for a, b in spans), len(speech), rtol=0.25)


async def test_the_readme_call_example_hears_the_greeting_then_its_own_words(
    parrot_stack: Stack, tmp_path: Path
) -> None:
    """README "Try a call without a phone", as written (the URL aside): no WAV, no TTS tool installed."""
    record = tmp_path / "out" / "heard.wav"  # the directory does not exist yet: the caller makes it
    argv = [str(BIN / "voicebridge-caller"), "--url", parrot_stack.media_ws_url, "--speak", "--wait-greeting"]
    argv += ["--record", str(record), "--hangup-after-silence", "2", "--json"]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["violations"] == []
    assert summary["clears_received"] == 0  # the caller did not barge in on the greeting
    assert len(summary["turns"]) == 2  # the greeting, then the caller's words played back
    assert len(summary["response_latencies_s"]) == 1
    assert record.stat().st_size > 44
