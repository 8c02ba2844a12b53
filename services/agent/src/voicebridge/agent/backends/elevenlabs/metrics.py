"""Prometheus metrics of the ElevenLabs backend. Labels are bounded: close codes map to a fixed set."""

from __future__ import annotations

from voicebridge.runtime.loop_metrics import Counter, Histogram
from voicebridge.runtime.metrics import LATENCY_BUCKETS

PING_RTT = Histogram(
    "agent_elevenlabs_ping_rtt_seconds",
    "ElevenLabs' own estimate of the WebSocket round trip (ping_ms of its ping events)",
    buckets=LATENCY_BUCKETS,
)
CONNECT_SECONDS = Histogram(
    "agent_elevenlabs_connect_seconds",
    "From starting to connect (signed URL included) to conversation_initiation_metadata",
    buckets=LATENCY_BUCKETS,
)
CLOSES = Counter(
    "agent_elevenlabs_close", "ElevenLabs conversations closed, by WebSocket close code", ["code"]
)
LATE_AUDIO_DROPPED = Counter(
    "agent_elevenlabs_late_audio_dropped", "Agent audio chunks dropped because their response was interrupted"
)
# The bridge's inbound delay as ElevenLabs sees it: caller frame at the edge -> user_audio_chunk written.
# Audio held while the conversation connects is not observed (connect time is its own histogram).
INBOUND_ADDED_LATENCY = Histogram(
    "agent_elevenlabs_inbound_added_latency_seconds",
    "Caller audio: arrival at the edge to its user_audio_chunk leaving for ElevenLabs",
    buckets=LATENCY_BUCKETS,
)
AUDIO_CHUNKS = Counter(
    "agent_elevenlabs_audio_chunks",
    "Audio chunks on the ElevenLabs socket: user_audio_chunk sent, audio events received",
    ["direction"],
)
SKIPPED_FRAMES = Counter(
    "agent_elevenlabs_skipped_frames", "Server frames skipped mid-call, by kind", ["kind"]
)

# Known label values start at 0, so dashboards and alerts see a series before the first event.
for _kind in ("malformed", "unknown", "audio_backlog"):
    SKIPPED_FRAMES.labels(_kind)
for _direction in ("sent", "received"):
    AUDIO_CHUNKS.labels(_direction)

FIRST_AUDIO_SECONDS = Histogram(
    "agent_elevenlabs_first_audio_seconds",
    "From conversation_initiation_metadata to the agent's first audio (the greeting's latency)",
    buckets=LATENCY_BUCKETS,
)
TURN_SECONDS = Histogram(
    "agent_elevenlabs_turn_seconds",
    "From the caller's final user_transcript to the first audio of the agent's next response",
    buckets=LATENCY_BUCKETS,
)
INTERRUPTIONS = Counter(
    "agent_elevenlabs_interruptions",
    "Interruption events from ElevenLabs (the agent heard the caller cut in)",
)
AUDIO_SECONDS = Counter(
    "agent_elevenlabs_audio_seconds",
    "Seconds of audio on the ElevenLabs socket, user audio sent and agent audio received, at the negotiated"
    " rates (against wall time, audio at a wrong rate shows)",
    ["direction"],
)
for _direction in ("sent", "received"):
    AUDIO_SECONDS.labels(_direction)

_KNOWN_CODES = {1000, 1001, 1002, 1006, 1008, 1011}


def close_label(code: int | None) -> str:
    if code is None:
        return "none"
    return str(code) if code in _KNOWN_CODES else "other"


# What followed each error close mid-call (docs/elevenlabs.md#resume): `resumed` (a new conversation
# carries the call on), `failed` (two attempts in a row did not take: apology), `disabled`
# (ELEVENLABS_RESUME=false: apology), `impossible` (a close a new conversation would only repeat: apology);
# `continued`: a session opened with media's resume context (the call's earlier agent process died).
RESUMES = Counter(
    "agent_elevenlabs_resumes",
    "ElevenLabs conversations lost mid-call with an error, by what followed",
    ["outcome"],
)
RESUME_OUTCOMES = ("resumed", "failed", "disabled", "impossible", "continued")
for _outcome in RESUME_OUTCOMES:
    RESUMES.labels(_outcome)
# Each attempt at a new conversation that did not take: `refused` (it did not open) or `dropped` (it
# closed with an error again before the caller spoke or heard anything of it).
RESUME_ATTEMPTS_FAILED = Counter(
    "agent_elevenlabs_resume_attempts_failed",
    "Attempts at a new conversation for a call that did not take, by how",
    ["how"],
)
for _how in ("refused", "dropped"):
    RESUME_ATTEMPTS_FAILED.labels(_how)
RESUME_SECONDS = Histogram(
    "agent_elevenlabs_resume_seconds",
    "From an error close mid-call to the new conversation ready and told the call so far (resumed calls)",
    buckets=LATENCY_BUCKETS,
)
