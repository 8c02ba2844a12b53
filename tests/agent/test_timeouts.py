"""The ElevenLabs handshake must give up before the servicer does (docs/elevenlabs.md#the-websocket).

Why: when the backend times out first, it closes its own socket and reports *why* (no metadata, or no
WebSocket) in the refusal the caller's busy prompt follows; when the servicer's AGENT_OPEN_TIMEOUT_S
fires first, open() is cancelled and the log only says "not ready".
"""

from __future__ import annotations

from voicebridge.agent.config import AgentSettings
from voicebridge.runtime.config import Env


def test_the_default_handshake_timeout_is_shorter_than_the_open_timeout() -> None:
    settings = AgentSettings.from_env(Env({"AGENT_BACKEND": "elevenlabs", "ELEVENLABS_AGENT_ID": "agent_x"}))
    assert settings.elevenlabs is not None
    assert settings.elevenlabs.handshake_timeout_s < settings.open_timeout_s
