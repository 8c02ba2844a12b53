"""Agent service metrics (Prometheus). Bounded labels only: reasons and kinds, never call ids."""

from __future__ import annotations

from prometheus_client import Gauge

from voicebridge.runtime.loop_metrics import Counter, Histogram
from voicebridge.runtime.metrics import LATENCY_BUCKETS, PROCESSING_BUCKETS

SESSIONS_ACTIVE = Gauge("agent_sessions_active", "Agent sessions (calls) in progress")
SESSION_ENDS = Counter("agent_session_ends", "Agent sessions ended, by reason", ["reason"])
SESSION_OPEN_SECONDS = Histogram(
    "agent_session_open_seconds", "Time for the backend to become ready for a call", buckets=LATENCY_BUCKETS
)
FRAMES = Counter("agent_frames", "Audio chunks through the agent service", ["direction"])
# Caller audio: entered voicebridge at the edge -> handed to the agent backend (the bridge's inbound delay).
INBOUND_ADDED_LATENCY = Histogram(
    "agent_inbound_added_latency_seconds",
    "Caller audio: edge arrival to hand-off to the agent backend",
    buckets=LATENCY_BUCKETS,
)
PROCESSING = Histogram(
    "agent_frame_processing_seconds",
    "Backend work per audio chunk: inbound, encoded and written to the backend's socket; outbound, "
    "turned into an AudioChunk for media",
    ["direction"],
    buckets=PROCESSING_BUCKETS,
)

# Conversations whose stream broke or detached, kept for the call to re-attach (holds.py).
HELD = Gauge("agent_conversations_held", "Conversations held for their call to re-attach")
ATTACHES = Counter(
    "agent_attach",
    "Held conversations, by what became of them or of an attach: attached, not_found, denied, "
    "expired, overflow",
    ["outcome"],
)
HOLD_SECONDS = Histogram(
    "agent_hold_seconds",
    "How long a conversation was held before a stream re-attached or the hold ended",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0),
)

# Known label values start at 0, so dashboards and alerts see a series before the first event.
for _direction in ("in", "out"):
    FRAMES.labels(_direction)
for _direction in ("inbound", "outbound"):
    PROCESSING.labels(_direction)
for _reason in ("caller_hangup", "agent_ended", "agent_busy", "agent_error", "agent_timeout", "unavailable"):
    SESSION_ENDS.labels(_reason)
for _outcome in ("attached", "not_found", "denied", "expired", "overflow"):
    ATTACHES.labels(_outcome)
