"""Edge service metrics (Prometheus). Bounded labels only: directions, reasons, statuses."""

from __future__ import annotations

from prometheus_client import Gauge

from voicebridge.runtime.loop_metrics import Counter, Histogram
from voicebridge.runtime.metrics import LATENCY_BUCKETS, PROCESSING_BUCKETS

CALLS_ACTIVE = Gauge("edge_calls_active", "Media streams in progress")
CALL_ENDS = Counter("edge_call_ends", "Media streams ended, by reason", ["reason"])
STREAMS_REJECTED = Counter("edge_streams_rejected", "Media streams refused before any agent work", ["reason"])
PROTOCOL_ERRORS = Counter("edge_protocol_errors", "Malformed or out-of-order Twilio messages", ["kind"])
FRAMES = Counter("edge_frames", "Twilio media messages", ["direction"])
FRAMES_DROPPED = Counter("edge_frames_dropped", "Caller frames dropped, by reason", ["reason"])
# Agent audio: received by the agent service from its backend -> sent to Twilio (includes pacing hold).
OUTBOUND_ADDED_LATENCY = Histogram(
    "edge_outbound_added_latency_seconds",
    "Agent audio: arrival in voicebridge to the frame leaving for Twilio",
    buckets=LATENCY_BUCKETS,
)
PROCESSING = Histogram(
    "edge_frame_processing_seconds",
    "Edge work per audio frame: inbound, CallerAudio built and queued for media; outbound, Twilio media "
    "(and mark) encoded and written to the WebSocket",
    ["direction"],
    buckets=PROCESSING_BUCKETS,
)
CALL_STATUS = Counter("edge_call_status_callbacks", "Twilio call status callbacks, by status", ["status"])
OUTBOUND_CALLS = Counter("edge_outbound_calls", "Outbound calls requested, by result", ["result"])
HANGUPS = Counter(
    "edge_hangups", "Hang-ups and transfers carried out through the REST API", ["kind", "result"]
)
WEBHOOKS_REJECTED = Counter(
    "edge_webhooks_rejected", "Twilio webhooks refused, by endpoint and reason", ["endpoint", "reason"]
)
STREAM_STATUS = Counter("edge_stream_status_callbacks", "Twilio stream status callbacks, by event", ["event"])
CALL_STATUS_IGNORED = Counter(
    "edge_call_status_callbacks_ignored", "Call status callbacks stale, duplicated or after the end"
)
STREAM_ACTIONS = Counter(
    "edge_stream_actions", "<Connect action> requests (a call's stream ended), by answer", ["outcome"]
)
# A media replica died mid-call (media_link.py): the call opened again on another one, or not.
MEDIA_REATTACHES = Counter(
    "edge_media_reattach",
    "Calls whose media stream broke mid-call, by outcome: reattached (open again on another media "
    "replica), no_replica (none could take it), limit (EDGE_MEDIA_REATTACH_MAX re-opens already)",
    ["outcome"],
)
MEDIA_REATTACH_SECONDS = Histogram(
    "edge_media_reattach_seconds",
    "A call's media stream failure seen -> the call's CallStart written on another media replica",
    buckets=LATENCY_BUCKETS,
)
API_REQUESTS_REJECTED = Counter("edge_api_rejected", "Calls API requests refused, by reason", ["reason"])

# Known label values start at 0, so dashboards and alerts see a series before the first event.
for _reason in ("media_backpressure",):
    FRAMES_DROPPED.labels(_reason)
for _direction in ("in", "out"):
    FRAMES.labels(_direction)
for _direction in ("inbound", "outbound"):
    PROCESSING.labels(_direction)
for _reason in ("too_many_pending", "start_timeout", "closed_before_start", "bad_token", "bad_signature"):
    STREAMS_REJECTED.labels(_reason)
for _kind in ("malformed", "too_big", "binary_frame", "wrong_stream_sid", "out_of_order"):
    PROTOCOL_ERRORS.labels(_kind)
for _outcome in ("reopen", "call_ended", "ended_here", "limit"):
    STREAM_ACTIONS.labels(_outcome)
for _reason in ("caller_hangup", "agent_ended", "transferred", "protocol_error", "unavailable"):
    CALL_ENDS.labels(_reason)
for _outcome in ("reattached", "no_replica", "limit"):
    MEDIA_REATTACHES.labels(_outcome)
