"""What happened between two scrapes: histogram deltas and their quantiles, counter deltas, and the
messages per call-second each service handled."""

from __future__ import annotations

import math
import re
from typing import Any

_LE = re.compile(r'le="([^"]+)"')


def histogram_delta(before: dict, after: dict, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of the observations made between two scrapes."""
    buckets: dict[float, float] = {}
    for labels, value in after.get(f"{name}_bucket", {}).items():
        le = _LE.search(labels)
        if le is None:
            continue
        bound = float(le.group(1))
        prior = before.get(f"{name}_bucket", {}).get(labels, 0.0)
        buckets[bound] = buckets.get(bound, 0.0) + value - prior
    return sorted(buckets.items())


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile's linear interpolation inside the bucket holding rank q·n."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def latency_summary(buckets: list[tuple[float, float]], within_s: float = 0.005) -> dict[str, Any]:
    total = buckets[-1][1] if buckets else 0.0
    within = next((c for b, c in buckets if abs(b - within_s) < 1e-12), None)
    return {
        "count": int(total),
        "p50_ms": ms(quantile(0.5, buckets)),
        "p99_ms": ms(quantile(0.99, buckets)),
        "share_within_5ms": round(within / total, 5) if within is not None and total else None,
    }


# Messages each service handles, by the counters that count them (per-message cost = CPU / messages).
# gRPC figures count call messages (as if every call had its own stream); GRPC_WIRE counts the gRPC
# messages that actually crossed, which on multiplexed streams carry several call messages each.
_CALL = 'grpc_method="Call"'
_CONVERSE = 'grpc_method="Converse"'
MESSAGE_COUNTERS = {
    "edge": {
        "twilio_ws_in": ("edge_frames_total", 'direction="in"'),
        "twilio_ws_out": ("edge_frames_total", 'direction="out"'),
        "grpc_sent": ("grpc_client_msg_sent_total", _CALL),
        "grpc_received": ("grpc_client_msg_received_total", _CALL),
    },
    "media": {
        "grpc_from_edge": ("grpc_server_msg_received_total", _CALL),
        "grpc_to_edge": ("grpc_server_msg_sent_total", _CALL),
        "grpc_to_agent": ("grpc_client_msg_sent_total", _CONVERSE),
        "grpc_from_agent": ("grpc_client_msg_received_total", _CONVERSE),
    },
    "agent": {
        "grpc_from_media": ("grpc_server_msg_received_total", _CONVERSE),
        "grpc_to_media": ("grpc_server_msg_sent_total", _CONVERSE),
        "elevenlabs_ws_out": ("agent_elevenlabs_audio_chunks_total", 'direction="sent"'),
        "elevenlabs_ws_in": ("agent_elevenlabs_audio_chunks_total", 'direction="received"'),
    },
}


GRPC_WIRE = {  # service -> (counter, per-call method, multiplexed method)
    "edge": [("grpc_client_msg_sent_total", "Call"), ("grpc_client_msg_received_total", "Call")],
    "media": [
        ("grpc_server_msg_received_total", "Call"),
        ("grpc_server_msg_sent_total", "Call"),
        ("grpc_client_msg_sent_total", "Converse"),
        ("grpc_client_msg_received_total", "Converse"),
    ],
    "agent": [("grpc_server_msg_received_total", "Converse"), ("grpc_server_msg_sent_total", "Converse")],
}


def wire_rates(before: dict, after: dict, call_seconds: float) -> dict[str, float]:
    """gRPC messages per call-second that crossed each service's hops, batches counted once.

    A multiplexed call's messages are counted under its per-call method and the batches under the
    *Batch or *Many method; per-call streams count only under the per-call method."""
    out = {}
    for service, counters in GRPC_WIRE.items():
        if service not in before or service not in after:
            continue
        total = 0.0
        for name, method in counters:
            many = sum(
                counter_delta(before[service], after[service], name, f'grpc_method="{method}{rpc}"')
                for rpc in ("Batch", "Many")
            )
            one = counter_delta(before[service], after[service], name, f'grpc_method="{method}"')
            total += many if many else one
        out[service] = round(total / call_seconds, 2)
    return out


def counter_delta(before: dict, after: dict, name: str, fragment: str) -> float:
    return sum(v - before.get(name, {}).get(k, 0.0) for k, v in after.get(name, {}).items() if fragment in k)


def message_rates(before: dict, after: dict, call_seconds: float) -> dict[str, dict[str, float]]:
    """Messages per call-second that each service handled between two scrapes of every service."""
    return {
        service: {
            kind: round(counter_delta(before[service], after[service], name, frag) / call_seconds, 2)
            for kind, (name, frag) in kinds.items()
        }
        for service, kinds in MESSAGE_COUNTERS.items()
        if service in before and service in after
    }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def lag_histogram(buckets: list[tuple[float, float]]) -> dict[str, int]:
    """Cumulative (upper bound s, count) pairs as observations per bucket, keyed by the bound in ms
    ("+Inf" for the last): how the event-loop lag is spread, tails included."""
    out: dict[str, int] = {}
    below = 0.0
    for bound, count in buckets:
        key = "+Inf" if math.isinf(bound) else f"{bound * 1000:g}"
        out[key] = round(count - below)
        below = count
    return out
