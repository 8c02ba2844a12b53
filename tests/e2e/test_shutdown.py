"""SIGTERM (docker stop) to the agent with the drain deadline already passed (DRAIN_DEADLINE_S=0,
the harness's setting): the call in progress hears the agent's goodbye, is hung up with a reason, and
the agent exits 0. The same for media and the edge, and drains that let calls run to their end:
test_many_replicas.py (a stack per case costs seconds each; that module shares one)."""

from __future__ import annotations

import asyncio

from harness.audio import normalized_xcorr_peak, ulaw_to_float
from harness.heard import played_audio
from harness.stack import start_stack

from voicebridge.media.call import GOODBYE
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller


async def test_sigterm_to_the_agent_mid_call_says_goodbye_ends_the_call_and_it_exits_zero(tmp_path) -> None:
    stack = start_stack(tmp_path, {"AGENT_BACKEND": "parrot"})
    try:
        async with TwilioCaller(CallerConfig(url=stack.media_ws_url)) as call:
            await call.wait_heard(0.5, timeout=10)
            process = stack.agent
            assert process is not None
            exit_code = await asyncio.to_thread(process.stop, 10.0)
            await call.wait_closed(timeout=10)  # the edge hangs the call up rather than leave dead air
            assert call.closed_by == "server"
        # The agent's goodbye, in the parrot's format (PCM 16 kHz), as media played it to the caller.
        goodbye = ulaw_to_float(GOODBYE[1600:9600])
        coefficient, _ = normalized_xcorr_peak(goodbye, ulaw_to_float(played_audio(call)))
        assert coefficient > 0.8, f"the caller did not hear the goodbye ({coefficient:.2f})"
        assert exit_code == 0
        assert "shutting down" in process.log()
        assert "SHUTDOWN" in stack.edge.log()  # the call ended with that reason, not a dropped socket
    finally:
        stack.stop()
