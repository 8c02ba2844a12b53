"""The run's figures as one report (JSON or text), and each SLO given on the command line checked
against them."""

from __future__ import annotations

import argparse
import math
from typing import Any

from .caller import FRAME_BYTES, CallResult, gaps
from .deltas import histogram_delta, latency_summary, ms
from .procstats import peak_rss_bytes
from .runs import REDACTIONS
from .stack import StackInfo

SERVICES = ("edge", "media", "agent")
INBOUND = "agent_elevenlabs_inbound_added_latency_seconds"
OUTBOUND = "edge_outbound_added_latency_seconds"
HEARD = "media_heard_turn_latency_seconds"


def report(
    run: dict[str, Any], args: argparse.Namespace, stack: StackInfo, emu: dict[str, int] | None
) -> dict[str, Any]:
    results: list[CallResult] = run["results"]
    before, after = run["before"], run["after"]
    inbound = latency_summary(histogram_delta(before["agent"], after["agent"], INBOUND))
    outbound = latency_summary(histogram_delta(before["edge"], after["edge"], OUTBOUND))
    heard = latency_summary(histogram_delta(before["media"], after["media"], HEARD))
    e2e = sorted(x for r in results for x in r.summary.get("response_latencies_s", []))
    gap_counts = [gaps(r.heard_spans) for r in results]
    caller_sent = sum(r.voice_bytes_sent for r in results)
    agent_heard = sum(r.bytes_received for r in results)
    cpu = run["cpu"]
    call_s = run["call_seconds"]
    per_service = {n: round(c * 1000 / call_s, 3) for n, c in cpu.items()} if cpu and call_s else {}
    lost_in = (caller_sent - emu["received_bytes"]) / FRAME_BYTES if emu else None
    lost_out = (emu["sent_bytes"] - agent_heard) / FRAME_BYTES if emu else None
    out: dict[str, Any] = {
        "mode": "sequential" if args.sequential else "concurrent",
        "grpc_tls": bool(getattr(args, "tls", False)) and not args.attach,
        "calls": len(results),
        "failed_calls": sum(1 for r in results if r.error),
        "errors": sorted({r.error for r in results if r.error})[:5],
        "duration_s": args.call_seconds if args.sequential else args.duration,
        "cpu_window_s": round(run["window_s"], 2),
        "added_latency": {"inbound_caller_to_elevenlabs": inbound, "outbound_elevenlabs_to_caller": outbound},
        "heard_turn_latency": {
            "media_histogram": heard,
            "caller_end_to_end": {
                "count": len(e2e),
                "p50_ms": ms(_pct(e2e, 0.5)),
                "p99_ms": ms(_pct(e2e, 0.99)),
                "note": "end of speech sent -> reply heard; includes the emulator's 700 ms wait",
            },
        },
        "playback_gaps": {
            "over_40ms": sum(c for c, _ in gap_counts),
            "worst_in_utterance_ms": ms(max((w for _, w in gap_counts), default=0.0)),
            "calls_with_gaps": sum(1 for c, _ in gap_counts if c),
        },
        "lost_frames": {
            "caller_to_elevenlabs": None if lost_in is None else round(lost_in, 1),
            "elevenlabs_to_caller": None if lost_out is None else round(lost_out, 1),
            "caller_frames_sent": caller_sent // FRAME_BYTES,
            "emulator_frames_received": None if emu is None else emu["received_bytes"] // FRAME_BYTES,
            "emulator_frames_sent": None if emu is None else emu["sent_bytes"] // FRAME_BYTES,
            "caller_frames_heard": agent_heard // FRAME_BYTES,
        },
        "cpu_ms_per_call_second": {
            "total": round(sum(per_service.values()), 3) if per_service else None,
            **per_service,
        },
        "messages_per_call_second": run.get("messages_per_call_second"),
        "grpc_wire_messages_per_call_second": run.get("grpc_wire_messages_per_call_second"),
        "event_loop_lag_p99_ms": run.get("event_loop_lag_p99_ms"),
        "event_loop_lag_histogram_ms": run.get("event_loop_lag_histogram"),
        "gc_pause_histogram_ms": run.get("gc_pause_histogram"),
        "cpu_us_per_message": _per_message(per_service, run.get("messages_per_call_second")),
        "peak_rss_mib": {n: mib(v) for n, v in peak_rss_bytes(stack.pids).items()} if stack.pids else {},
        "machine": {**args.machine, "cores_busy_during_window": run.get("cores_busy")},
    }
    if "rss_trend" in run:
        trend = run["rss_trend"]
        out["rss_trend_mib"] = [
            {k: (v if k in ("calls", REDACTIONS) else mib(v)) for k, v in row.items()} for row in trend
        ]
        sizes = [row[REDACTIONS] for row in trend if row.get(REDACTIONS) is not None]
        if sizes:
            out["agent_log_redactions"] = {"first": sizes[0], "last": sizes[-1], "max": max(sizes)}
        if len(trend) >= 3:
            warm = trend[max(1, len(trend) // 10)]
            out["rss_growth_after_warmup_mib"] = {
                n: mib(trend[-1][n] - warm[n]) for n in SERVICES if n in warm
            }
    if "teardowns" in run:
        done = sorted(t for t in run["teardowns"] if t is not None)
        out["teardown_ms"] = {
            "count": len(done),
            "p50_ms": ms(_pct(done, 0.5)),
            "p99_ms": ms(_pct(done, 0.99)),
            "max_ms": ms(done[-1] if done else None),
            "not_torn_down": sum(1 for t in run["teardowns"] if t is None),
        }
    out["slo"] = slo_checks(out, args)
    return out


def _per_message(cpu_ms: dict[str, float], rates: dict[str, dict[str, float]] | None) -> dict[str, float]:
    """Each service's CPU per message it handled (all work, DSP and timers included, over messages)."""
    if not rates:
        return {}
    handled = {s: sum(rates[s].values(), 0.0) for s in cpu_ms if s in rates}
    return {s: round(cpu_ms[s] * 1000 / n, 1) for s, n in handled.items() if n}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def mib(v: int | None) -> float | None:
    return None if v is None else round(v / 2**20, 1)


def slo_checks(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Each SLO given on the command line: the measured value and whether it was met."""
    checks: dict[str, Any] = {}
    if args.slo_cpu_ms_per_call_s is not None:
        value = out["cpu_ms_per_call_second"]["total"]
        checks["cpu_ms_per_call_s"] = (value, value is not None and value <= args.slo_cpu_ms_per_call_s)
    if args.slo_p99_added_ms is not None:
        lat = out["added_latency"]
        worst = [lat[k]["p99_ms"] for k in lat]
        value = None if None in worst else max(worst)
        checks["p99_added_ms"] = (value, value is not None and value <= args.slo_p99_added_ms)
    if args.slo_gaps is not None:
        value = out["playback_gaps"]["over_40ms"]
        checks["gaps"] = (value, value <= args.slo_gaps)
    if args.slo_worst_gap_ms is not None:
        value = out["playback_gaps"]["worst_in_utterance_ms"]
        checks["worst_gap_ms"] = (value, value is not None and value <= args.slo_worst_gap_ms)
    if args.slo_rss_growth_mib is not None:
        growth = out.get("rss_growth_after_warmup_mib") or {}
        value = max((v for v in growth.values() if v is not None), default=None)
        checks["rss_growth_mib"] = (value, value is not None and value <= args.slo_rss_growth_mib)
    if args.slo_teardown_ms is not None:
        teardown = out.get("teardown_ms") or {}
        value = teardown.get("p99_ms")
        met = value is not None and value <= args.slo_teardown_ms and not teardown.get("not_torn_down")
        checks["teardown_p99_ms"] = (value, met)
    if args.slo_lost is not None:
        lost = out["lost_frames"]
        values = [lost["caller_to_elevenlabs"], lost["elevenlabs_to_caller"]]
        value = None if None in values else max(abs(v) for v in values)
        checks["lost_frames"] = (value, value is not None and value <= args.slo_lost)
    if out["failed_calls"]:
        checks["failed_calls"] = (out["failed_calls"], False)
    return {
        "met": all(ok for _, ok in checks.values()),
        "checks": {k: {"value": v, "met": ok} for k, (v, ok) in checks.items()},
    }


def text(out: dict[str, Any]) -> str:
    lat, lost = out["added_latency"], out["lost_frames"]
    lines = [
        f"{out['calls']} {out['mode']} calls ({out['failed_calls']} failed) on {out['machine']['cpus']} CPUs "
        f"({out['machine']['cpu_model']}); gRPC hops: {'mTLS' if out.get('grpc_tls') else 'plaintext'}",
        f"added latency inbound  p50 {lat['inbound_caller_to_elevenlabs']['p50_ms']} ms "
        f"p99 {lat['inbound_caller_to_elevenlabs']['p99_ms']} ms",
        f"added latency outbound p50 {lat['outbound_elevenlabs_to_caller']['p50_ms']} ms "
        f"p99 {lat['outbound_elevenlabs_to_caller']['p99_ms']} ms",
        f"heard turn latency (media) p50 {out['heard_turn_latency']['media_histogram']['p50_ms']} ms "
        f"p99 {out['heard_turn_latency']['media_histogram']['p99_ms']} ms",
        f"playback gaps >40 ms: {out['playback_gaps']['over_40ms']}; "
        f"lost frames in/out: {lost['caller_to_elevenlabs']}/{lost['elevenlabs_to_caller']}",
        f"CPU ms per call-second: {out['cpu_ms_per_call_second']}",
        f"gRPC messages per call-second (sent + received): {out.get('grpc_wire_messages_per_call_second')}",
        f"event-loop lag p99 ms: {out.get('event_loop_lag_p99_ms')}",
        f"peak RSS MiB: {out['peak_rss_mib']}",
        *(
            [f"RSS growth after warm-up MiB: {out['rss_growth_after_warmup_mib']}"]
            if "rss_growth_after_warmup_mib" in out
            else []
        ),
        *([f"teardown (hang-up -> all idle): {out['teardown_ms']}"] if "teardown_ms" in out else []),
        f"agent log redaction set (first/last/max): {out.get('agent_log_redactions')}",
        f"SLOs met: {out['slo']['met']} {out['slo']['checks']}",
    ]
    return "\n".join(lines)
