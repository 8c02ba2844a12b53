"""SIGTERM (docker stop) ends calls in progress with a reason and the services exit cleanly."""

from __future__ import annotations

import asyncio

import pytest
from harness.stack import start_stack

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller


@pytest.mark.parametrize("service", ["media", "agent"])
async def test_sigterm_mid_call_ends_the_call_and_the_service_exits_zero(tmp_path, service: str) -> None:
    stack = start_stack(tmp_path / service, {"AGENT_BACKEND": "parrot"})
    try:
        async with TwilioCaller(CallerConfig(url=stack.media_ws_url)) as call:
            await call.wait_heard(0.5, timeout=10)
            process = stack.media if service == "media" else stack.agent
            exit_code = await asyncio.to_thread(process.stop, 10.0)
            await call.wait_closed(timeout=10)  # the edge hangs the call up rather than leave dead air
            assert call.closed_by == "server"
        assert exit_code == 0
        assert "shutting down" in process.log()
        assert "SHUTDOWN" in stack.edge.log()  # the call ended with that reason, not a dropped socket
    finally:
        stack.stop()
