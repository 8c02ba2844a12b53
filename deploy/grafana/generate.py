"""Generate voicebridge's Grafana dashboards (deploy/grafana/dashboards/*.json) from one description.

Why a generator: four dashboards share the same latency triples (p50/p95/p99), the `job` variable and
the datasource; writing them by hand drifts. The JSON is committed (Grafana provisions plain files);
tests/ops/test_dashboards.py fails when it is stale. Run: `python deploy/grafana/generate.py`.

One file (~440 lines) on purpose: it is the single description of the four dashboards, read as one
(shared expression helpers, then each dashboard's panels); split up, a panel's query and its layout
would sit apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RI = "$__rate_interval"
SEL = 'job=~"$job"'


# --- expressions ----------------------------------------------------------------------------------


def quantiles(metric: str, by: str = "", extra: str = "") -> list[tuple[str, str]]:
    """p50/p95/p99 targets of a histogram, summed across instances (keeps `le`)."""
    group = f"le, {by}" if by else "le"
    sel = f"{SEL}, {extra}" if extra else SEL
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{sel}}}[{RI}])))",
            f"p{int(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def rate(metric: str, by: str, legend: str | None = None, extra: str = "") -> list[tuple[str, str]]:
    sel = f"{SEL}, {extra}" if extra else SEL
    return [(f"sum by ({by}) (rate({metric}{{{sel}}}[{RI}]))", legend or "{{" + by + "}}")]


def gauge(metric: str, by: str = "job") -> list[tuple[str, str]]:
    return [(f"sum by ({by}) ({metric}{{{SEL}}})", "{{" + by + "}}")]


# --- panels ---------------------------------------------------------------------------------------


def panel(title: str, unit: str, targets: list[tuple[str, str]], description: str = "") -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def process_panels() -> list[dict[str, Any]]:
    """The same health panels on every service dashboard: loop lag, tasks, CPU, memory."""
    return [
        row("Process"),
        panel(
            "Event-loop lag p99",
            "s",
            [
                (
                    f"histogram_quantile(0.99, sum by (le, job) "
                    f"(rate(voicebridge_event_loop_lag_seconds_bucket{{{SEL}}}[{RI}])))",
                    "p99 {{job}}",
                )
            ],
            "How late a 100 ms timer fires: every call in the process waits this long.",
        ),
        panel("asyncio tasks", "short", gauge("voicebridge_asyncio_tasks"), "Grows without bound on a leak."),
        panel("CPU", "percentunit", rate("process_cpu_seconds_total", "job"), "Share of one core."),
        panel("Resident memory", "bytes", gauge("process_resident_memory_bytes")),
    ]


def grpc_panels(side: str, title: str) -> list[dict[str, Any]]:
    """Standard go-grpc-prometheus families on one side (server or client) of the internal hops."""
    return [
        panel(
            f"{title}: streams started / completed by code",
            "reqps",
            rate(f"grpc_{side}_started_total", "grpc_method", "started {{grpc_method}}")
            + rate(f"grpc_{side}_handled_total", "grpc_method, grpc_code", "{{grpc_method}} {{grpc_code}}"),
        ),
        panel(
            f"{title}: messages per second",
            "reqps",
            rate(f"grpc_{side}_msg_received_total", "grpc_method", "received {{grpc_method}}")
            + rate(f"grpc_{side}_msg_sent_total", "grpc_method", "sent {{grpc_method}}"),
            "Per-message cost is what sets capacity (docs/performance.md).",
        ),
        panel(
            f"{title}: call messages per gRPC message",
            "short",
            [
                (
                    " / ".join(
                        f"sum by (grpc_method, direction) "
                        f'(rate(voicebridge_mux_batch_items_{part}{{{SEL}, side="{side}"}}[{RI}]))'
                        for part in ("sum", "count")
                    ),
                    "{{grpc_method}} {{direction}}",
                )
            ],
            "How many calls' messages each multiplexed gRPC message carries (runtime/mux/).",
        ),
    ]


# --- dashboards -----------------------------------------------------------------------------------


def dashboard(uid: str, title: str, jobs: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    """Lay panels out two per row on the 24-column grid; rows take a full line."""
    x = y = 0
    laid: list[dict[str, Any]] = []
    for pid, p in enumerate(panels, start=1):
        if p["type"] == "row":
            if x:
                x, y = 0, y + 8
            p = {**p, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}
            y += 1
        else:
            p = {**p, "gridPos": {"x": x, "y": y, "w": 12, "h": 8}}
            x += 12
            if x >= 24:
                x, y = 0, y + 8
        laid.append({"id": pid, **p})
    return {
        "uid": uid,
        "title": title,
        "tags": ["voicebridge"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "timezone": "",
        "links": [
            {"type": "dashboards", "tags": ["voicebridge"], "asDropdown": True, "title": "voicebridge"}
        ],
        "templating": {
            "list": [
                {
                    "name": "job",
                    "label": "job",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": f'label_values(up{{job=~"{jobs}"}}, job)', "refId": "job"},
                    "definition": f'label_values(up{{job=~"{jobs}"}}, job)',
                    "includeAll": True,
                    "multi": True,
                    "allValue": jobs,
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "refresh": 2,
                    "sort": 1,
                }
            ]
        },
        "panels": laid,
    }


def overview() -> dict[str, Any]:
    return dashboard(
        "voicebridge-overview",
        "voicebridge: overview",
        "edge|media|agent",
        [
            row("Calls"),
            panel(
                "Active calls per service",
                "short",
                [
                    (f"sum(edge_calls_active{{{SEL}}})", "edge"),
                    (f"sum(media_calls_active{{{SEL}}})", "media"),
                    (f"sum(agent_sessions_active{{{SEL}}})", "agent"),
                ],
                "The three should agree; a gap means a leg leaked or failed to start.",
            ),
            panel(
                "Calls ended by reason (per minute)",
                "short",
                [
                    (f"sum by (reason) (rate(edge_call_ends_total{{{SEL}}}[{RI}])) * 60", "{{reason}}"),
                ],
            ),
            panel(
                "Errors: frames dropped, protocol errors, refused streams (per second)",
                "reqps",
                [
                    (
                        f"sum by (job, reason) (rate(edge_frames_dropped_total{{{SEL}}}[{RI}]))",
                        "{{job}} {{reason}}",
                    ),
                    (
                        f"sum by (job, reason) (rate(media_frames_dropped_total{{{SEL}}}[{RI}]))",
                        "{{job}} {{reason}}",
                    ),
                    (f"sum by (kind) (rate(edge_protocol_errors_total{{{SEL}}}[{RI}]))", "protocol {{kind}}"),
                    (
                        f"sum by (reason) (rate(edge_streams_rejected_total{{{SEL}}}[{RI}]))",
                        "refused {{reason}}",
                    ),
                ],
            ),
            panel(
                "Internal gRPC streams completed by code (per second)",
                "reqps",
                rate("grpc_server_handled_total", "job, grpc_code", "{{job}} {{grpc_code}}"),
            ),
            row("Replicas and deploys"),
            panel(
                "Draining replicas, and the calls they still hold",
                "short",
                [
                    (f"sum by (job) (voicebridge_draining{{{SEL}}})", "draining {{job}}"),
                    (f"sum by (job) (voicebridge_drain_calls_left{{{SEL}}})", "calls left {{job}}"),
                ],
                "SIGTERM → NOT_SERVING, calls run on up to DRAIN_DEADLINE_S (docs/operations.md).",
            ),
            panel(
                "New calls moved to another replica, or with none (per minute)",
                "short",
                [
                    (
                        f"sum by (job, hop, why) "
                        f"(rate(voicebridge_replica_calls_moved_total{{{SEL}}}[{RI}])) * 60 or vector(0)",
                        "{{job}} → {{hop}} moved: {{why}}",
                    ),
                    (
                        f"sum by (job, hop) "
                        f"(rate(voicebridge_replica_unavailable_total{{{SEL}}}[{RI}])) * 60 or vector(0)",
                        "{{job}} → {{hop}} no replica",
                    ),
                ],
                "Refused (draining) or vanished before the call started: no caller noticed. 0 with one "
                "address per target (no replicas to choose from).",
            ),
            row("Latency the bridge adds"),
            panel(
                "Caller → ElevenLabs: added latency",
                "s",
                quantiles("agent_elevenlabs_inbound_added_latency_seconds"),
                "Caller frame arriving at the edge → its user_audio_chunk written to ElevenLabs.",
            ),
            panel(
                "ElevenLabs → caller: added latency",
                "s",
                quantiles("edge_outbound_added_latency_seconds"),
                "Agent audio received (or due, if paced) → the frame written to Twilio.",
            ),
            panel(
                "Heard turn latency",
                "s",
                quantiles("media_heard_turn_latency_seconds"),
                "Caller's end of speech → Twilio's mark echo for the reply's first audio (as heard).",
            ),
            panel(
                "Barge-in latency",
                "s",
                quantiles("media_barge_in_latency_seconds"),
                "Caller's speech onset → clear sent to the edge.",
            ),
            panel(
                "Mark acknowledgement lag",
                "s",
                quantiles("media_mark_ack_lag_seconds"),
                "Mark sent → echoed by Twilio: how far ahead of the caller's ear playback runs.",
            ),
            panel(
                "Caller → agent backend hand-off latency",
                "s",
                quantiles("agent_inbound_added_latency_seconds"),
                "Caller frame at the edge → handed to the agent backend (any backend, parrot included).",
            ),
            row("ElevenLabs"),
            panel(
                "ElevenLabs connect time",
                "s",
                quantiles("agent_elevenlabs_connect_seconds"),
                "Signed URL, WebSocket upgrade and conversation_initiation_metadata.",
            ),
            panel("ElevenLabs ping RTT", "s", quantiles("agent_elevenlabs_ping_rtt_seconds")),
            row("Health"),
            panel(
                "Event-loop lag p99",
                "s",
                [
                    (
                        f"histogram_quantile(0.99, sum by (le, job) "
                        f"(rate(voicebridge_event_loop_lag_seconds_bucket{{{SEL}}}[{RI}])))",
                        "{{job}}",
                    )
                ],
            ),
            panel("CPU per service", "percentunit", rate("process_cpu_seconds_total", "job")),
        ],
    )


def edge() -> dict[str, Any]:
    return dashboard(
        "voicebridge-edge",
        "voicebridge: edge",
        "edge",
        [
            row("Calls"),
            panel("Active media streams", "short", gauge("edge_calls_active")),
            panel("Streams ended by reason", "reqps", rate("edge_call_ends_total", "reason")),
            panel("Streams refused before start", "reqps", rate("edge_streams_rejected_total", "reason")),
            panel("Protocol errors", "reqps", rate("edge_protocol_errors_total", "kind")),
            panel(
                "Stream action answers",
                "reqps",
                rate("edge_stream_actions_total", "outcome"),
                "Twilio's <Connect action> after a stream ended: reopen (its edge died), call_ended, "
                "ended_here, limit (docs/failover.md#edge-dies).",
            ),
            row("Frames"),
            panel(
                "Twilio frames in / out / dropped",
                "reqps",
                rate("edge_frames_total", "direction")
                + rate("edge_frames_dropped_total", "reason", "dropped {{reason}}"),
            ),
            panel(
                "Processing per frame",
                "s",
                quantiles("edge_frame_processing_seconds", "direction"),
                "Inbound: CallerAudio built and queued; outbound: encoded and written to the WebSocket.",
            ),
            panel(
                "ElevenLabs → caller: added latency",
                "s",
                quantiles("edge_outbound_added_latency_seconds"),
                "Agent audio received (or due, if paced) → the frame written to Twilio.",
            ),
            *grpc_panels("client", "gRPC to media"),
            *process_panels(),
        ],
    )


def media() -> dict[str, Any]:
    return dashboard(
        "voicebridge-media",
        "voicebridge: media",
        "media",
        [
            row("Calls"),
            panel("Active calls", "short", gauge("media_calls_active")),
            panel("Calls ended by reason", "reqps", rate("media_call_ends_total", "reason")),
            row("Frames"),
            panel("Audio messages by direction", "reqps", rate("media_frames_total", "direction")),
            panel("Dropped by reason", "reqps", rate("media_frames_dropped_total", "reason")),
            panel(
                "Processing per message (codec, VAD, resampling)",
                "s",
                quantiles("media_frame_processing_seconds", "direction"),
            ),
            panel(
                "Playout gap between frames to the caller",
                "s",
                quantiles("media_playout_gap_seconds"),
                "20 ms when healthy; above 40 ms the caller's buffer may run dry.",
            ),
            panel(
                "Playout stalls",
                "reqps",
                [(f"sum(rate(media_playout_stalls_total{{{SEL}}}[{RI}]))", "stalls")],
            ),
            panel("Mark acknowledgement lag", "s", quantiles("media_mark_ack_lag_seconds")),
            row("Turns"),
            panel("Heard turn latency", "s", quantiles("media_heard_turn_latency_seconds")),
            panel("Barge-in latency", "s", quantiles("media_barge_in_latency_seconds", "source")),
            panel("Barge-ins by source", "reqps", rate("media_barge_ins_total", "source")),
            panel("VAD events", "reqps", rate("media_vad_events_total", "kind")),
            row("gRPC"),
            *grpc_panels("server", "From edge"),
            *grpc_panels("client", "To agent"),
            *process_panels(),
        ],
    )


def agent() -> dict[str, Any]:
    return dashboard(
        "voicebridge-agent",
        "voicebridge: agent",
        "agent",
        [
            row("Sessions"),
            panel("Active sessions", "short", gauge("agent_sessions_active")),
            panel("Sessions ended by reason", "reqps", rate("agent_session_ends_total", "reason")),
            panel("Session open time", "s", quantiles("agent_session_open_seconds")),
            panel("Audio chunks by direction", "reqps", rate("agent_frames_total", "direction")),
            panel(
                "Caller → backend hand-off latency",
                "s",
                quantiles("agent_inbound_added_latency_seconds"),
            ),
            panel(
                "Processing per chunk",
                "s",
                quantiles("agent_frame_processing_seconds", "direction"),
            ),
            row("ElevenLabs"),
            panel(
                "Caller → ElevenLabs: added latency",
                "s",
                quantiles("agent_elevenlabs_inbound_added_latency_seconds"),
                "Caller frame arriving at the edge → its user_audio_chunk written to ElevenLabs.",
            ),
            panel("Connect time", "s", quantiles("agent_elevenlabs_connect_seconds")),
            panel("Ping RTT (ElevenLabs' estimate)", "s", quantiles("agent_elevenlabs_ping_rtt_seconds")),
            panel("Conversations closed by code", "reqps", rate("agent_elevenlabs_close_total", "code")),
            panel(
                "Error closes mid-call: what followed",
                "reqps",
                [
                    *rate("agent_elevenlabs_resumes_total", "outcome"),
                    *rate("agent_elevenlabs_resume_attempts_failed_total", "how", "attempt {{how}}"),
                ],
                "resumed: the call went on in a new conversation; failed/disabled/impossible: the apology"
                " (docs/failover.md).",
            ),
            panel(
                "Resume time",
                "s",
                quantiles("agent_elevenlabs_resume_seconds"),
                "Error close mid-call → the new conversation ready and told the call so far.",
            ),
            panel(
                "Audio chunks on the ElevenLabs socket",
                "reqps",
                rate("agent_elevenlabs_audio_chunks_total", "direction"),
            ),
            panel(
                "Dropped or skipped",
                "reqps",
                [
                    (f"sum(rate(agent_elevenlabs_late_audio_dropped_total{{{SEL}}}[{RI}]))", "late audio"),
                    *rate("agent_elevenlabs_skipped_frames_total", "kind", "skipped {{kind}}"),
                ],
            ),
            row("gRPC"),
            *grpc_panels("server", "From media"),
            *process_panels(),
        ],
    )


DASHBOARDS = {
    "voicebridge-overview": overview,
    "voicebridge-edge": edge,
    "voicebridge-media": media,
    "voicebridge-agent": agent,
}


def render() -> dict[str, str]:
    """File name → JSON text, exactly as committed."""
    return {f"{name}.json": json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
