"""Settings of the ElevenLabs backend: one frozen value built once from the environment by config.py."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .protocol import DynamicValue

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
CONVERSATION_PATH = "/v1/convai/conversation"


@dataclass(frozen=True)
class ElevenLabsSettings:
    """How to reach the agent. `api_key` is only needed for private agents (signed URL per call)."""

    agent_id: str
    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    requires_auth: bool = False
    handshake_timeout_s: float = 8.0
    # Caller audio held until the conversation's metadata arrives (sized for the largest offered format).
    max_buffered_audio_s: float = 2.0
    # Agent audio read from ElevenLabs but not yet taken by media; beyond it new audio is dropped so a
    # stalled media link cannot grow memory without bound (TTS arrives faster than real time).
    max_pending_audio_s: float = 60.0
    config_override: Mapping[str, Any] | None = None
    extra_dynamic_variables: Mapping[str, DynamicValue] = field(default_factory=dict)
    # Twilio <Parameter name="agent_id"> picks another agent for one call. Off by default: whoever can put
    # a parameter on a stream (the calls API's variables) could otherwise run any agent of the account.
    allow_agent_override: bool = False
    # A conversation lost mid-call with an error is continued in a new one that is told the call so far
    # (resume.py, docs/elevenlabs.md#resume); off: the caller hears the apology and the call ends.
    resume: bool = True
    # Spoken by the new conversation instead of the agent's first message (an override the agent must
    # allow: Security → Overrides → First message). Empty: no override; the new conversation's greeting
    # is dropped and the agent speaks again when the caller does.
    resume_first_message: str = ""

    def __post_init__(self) -> None:
        if self.requires_auth and not self.api_key:
            raise ValueError("ElevenLabs: requires_auth needs an API key (ELEVENLABS_API_KEY)")
        scheme = urllib.parse.urlsplit(self.base_url).scheme
        if scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"ElevenLabs: base_url must be http(s) or ws(s), got {self.base_url!r}")

    @property
    def http_base(self) -> str:
        parts = urllib.parse.urlsplit(self.base_url.rstrip("/"))
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, "", ""))

    @property
    def ws_base(self) -> str:
        """https → wss, http → ws, keeping any base path (as the SDK's build_ws_url does)."""
        parts = urllib.parse.urlsplit(self.base_url.rstrip("/"))
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, "", ""))

    def conversation_url(self, agent_id: str) -> str:
        return f"{self.ws_base}{CONVERSATION_PATH}?{urllib.parse.urlencode({'agent_id': agent_id})}"
