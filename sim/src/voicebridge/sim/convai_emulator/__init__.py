"""A loopback ElevenLabs Agents (ConvAI) server speaking the real WebSocket protocol, for tests and by hand.

Why: the agent service must be tested against every protocol corner (ping without `ping_ms`, late audio
after an interruption, each close code, signed URLs, busy refusals, audio ids per reply or per chunk)
with no network. Shapes follow docs/elevenlabs.md (from ElevenLabs' AsyncAPI spec of the protocol,
"the spec" below).

One concern per module: the server and its refusals (server.py), one conversation as tests drive it
(session.py), how an agent behaves (script.py), ready-made behaviours (scenarios.py), wire shapes
(wire.py), audio helpers (audio.py), the command line (cli.py), and a call that outlives its conversation
(failover.py). Every name is importable from here.
"""

from .audio import bytes_per_ms, decode_to_pcm16, encode_pcm16, resample, rms, silence, tone
from .cli import main
from .failover import DropsMidCall, even_alignment
from .scenarios import Utterances, default_scenario
from .script import AgentScript, Predicate, Scenario
from .server import ConvAIEmulator
from .session import ContextReceived, EmulatedSession, SessionClosedError
from .wire import (
    CONVERSATION_PATH,
    FORMATS,
    OMIT,
    SIGNED_URL_PATH,
    chunk_alignment,
    error_event,
    message_kind,
)

__all__ = [
    "CONVERSATION_PATH",
    "FORMATS",
    "OMIT",
    "SIGNED_URL_PATH",
    "AgentScript",
    "ContextReceived",
    "ConvAIEmulator",
    "DropsMidCall",
    "EmulatedSession",
    "Predicate",
    "Scenario",
    "SessionClosedError",
    "Utterances",
    "bytes_per_ms",
    "chunk_alignment",
    "decode_to_pcm16",
    "default_scenario",
    "encode_pcm16",
    "error_event",
    "even_alignment",
    "main",
    "message_kind",
    "resample",
    "rms",
    "silence",
    "tone",
]
