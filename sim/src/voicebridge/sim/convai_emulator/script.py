"""How one emulated agent behaves (`AgentScript`), and the shape of a scenario: the agent's side of a
conversation, written as a coroutine that drives an `EmulatedSession`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .wire import FORMATS

if TYPE_CHECKING:
    from .session import EmulatedSession

Scenario = Callable[["EmulatedSession"], Awaitable[None]]
Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class AgentScript:
    """How one emulated agent behaves. Formats are the agent's settings (no client override exists)."""

    input_format: str = "pcm_16000"
    output_format: str = "pcm_16000"
    requires_auth: bool = False
    scenario: Scenario | None = None  # None → the greeting + echo behaviour (see module docstring)
    busy: Literal["no", "error_event", "http_429"] = "no"
    close_on_early_audio: bool = False
    send_metadata: bool = True  # False: never answer the init (handshake timeouts)
    metadata_delay_s: float = 0.0
    metadata_gate: asyncio.Event | None = None  # when set, the metadata waits for this event
    conversation_id_prefix: str = "conv_emu_"
    # How audio `event_id`s are numbered. ElevenLabs documents the id as a "sequential identifier for
    # the audio chunk" without saying whether one reply's chunks share it (docs/elevenlabs.md):
    # "per_reply" gives every chunk of one send_audio() the same id, "per_chunk" a new id per chunk.
    event_ids: Literal["per_reply", "per_chunk"] = "per_reply"
    # Keep every user_audio_chunk message in `session.received` (tests wait for them). A load run's
    # agent keeps only the audio bytes: tens of thousands of kept dicts make the collector pause the
    # emulator's loop.
    keep_audio_messages: bool = True

    def __post_init__(self) -> None:
        for fmt in (self.input_format, self.output_format):
            if fmt not in FORMATS:
                raise ValueError(f"unknown audio format {fmt!r}; one of {', '.join(FORMATS)}")
        if self.event_ids not in ("per_reply", "per_chunk"):
            raise ValueError(f"event_ids must be per_reply or per_chunk, not {self.event_ids!r}")
