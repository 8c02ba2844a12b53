"""Media service metrics (Prometheus). Bounded labels only: directions, reasons, sources."""

from __future__ import annotations

from prometheus_client import Gauge

from voicebridge.runtime.loop_metrics import Counter, Histogram
from voicebridge.runtime.metrics import LATENCY_BUCKETS, PROCESSING_BUCKETS

CALLS_ACTIVE = Gauge("media_calls_active", "Calls in progress in the media service")
CALL_ENDS = Counter("media_call_ends", "Calls ended in the media service, by reason", ["reason"])
FRAMES = Counter(
    "media_frames", "Audio messages through media", ["direction"]
)  # caller_in, agent_in, caller_out...
FRAMES_DROPPED = Counter("media_frames_dropped", "Audio messages dropped, by reason", ["reason"])
PROCESSING = Histogram(
    "media_frame_processing_seconds",
    "CPU-side work per audio message inside media (codec, VAD, resampling)",
    ["direction"],
    buckets=PROCESSING_BUCKETS,
)
PLAYOUT_STALLS = Counter("media_playout_stalls", "Times the pacer fell behind real time and re-anchored")
PLAYOUT_GAP = Histogram(
    "media_playout_gap_seconds",
    "Time between consecutive frames sent to the caller while the agent is talking",
    buckets=LATENCY_BUCKETS,
)
MARK_ACK_LAG = Histogram(
    "media_mark_ack_lag_seconds",
    "Playback mark sent -> echoed by the telephony provider",
    buckets=LATENCY_BUCKETS,
)
BARGE_INS = Counter("media_barge_ins", "Agent playback stopped because the caller spoke", ["source"])
VAD_EVENTS = Counter("media_vad_events", "Voice activity events", ["kind"])
HEARD_TURN_LATENCY = Histogram(
    "media_heard_turn_latency_seconds",
    "Caller's end of speech -> the provider's mark echo for the first agent audio of the reply",
    buckets=LATENCY_BUCKETS,
)
BARGE_IN_LATENCY = Histogram(
    "media_barge_in_latency_seconds",
    "Caller's speech onset -> clear sent to the edge",
    ["source"],
    buckets=LATENCY_BUCKETS,
)

# Known label values start at 0, so dashboards and alerts see a series before the first event.
for _reason in ("agent_not_ready", "agent_backpressure", "interrupted", "playout_full"):
    FRAMES_DROPPED.labels(_reason)
for _direction in ("caller_in", "agent_out", "agent_in"):
    FRAMES.labels(_direction)
for _source in ("local", "agent"):
    BARGE_INS.labels(_source)
    BARGE_IN_LATENCY.labels(_source)
for _direction in ("inbound", "outbound"):
    PROCESSING.labels(_direction)
for _kind in ("start", "end"):
    VAD_EVENTS.labels(_kind)
for _reason in ("caller_hangup", "agent_ended", "agent_error", "protocol_error", "unavailable"):
    CALL_ENDS.labels(_reason)
BARGE_IN_RESUMES = Counter(
    "media_barge_in_resumes", "Agent playback paused for caller sound that proved not to be an interruption"
)
# A CallStart with reattach: what became of taking over the agent's held conversation (attached; the
# agent ignored attach and began afresh; not_found on every replica, denied, refused: a new one began).
REATTACHES = Counter(
    "media_reattach", "Calls re-opened on this media that took over a held agent conversation", ["outcome"]
)
for _outcome in ("attached", "ignored", "not_found", "denied", "refused"):
    REATTACHES.labels(_outcome)
