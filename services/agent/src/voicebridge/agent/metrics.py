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

# Known label values start at 0, so dashboards and alerts see a series before the first event.
for _direction in ("in", "out"):
    FRAMES.labels(_direction)
for _direction in ("inbound", "outbound"):
    PROCESSING.labels(_direction)
for _reason in ("caller_hangup", "agent_ended", "agent_busy", "agent_error", "agent_timeout", "unavailable"):
    SESSION_ENDS.labels(_reason)
