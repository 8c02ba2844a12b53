"""The two kinds of run: N calls at once (CPU window, message rates, event-loop lag), or M calls one
after another (RSS trend, teardown time, the agent's redaction set)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from .caller import run_call
from .deltas import histogram_delta, lag_histogram, message_rates, ms, quantile, wire_rates
from .procstats import busy_cpu_seconds, cpu_seconds, own_cpu_seconds, rss_bytes
from .scrape import scrape, scrape_value
from .stack import StackInfo

CALLS_ACTIVE = {"edge": "edge_calls_active", "media": "media_calls_active", "agent": "agent_sessions_active"}
TEARDOWN_GIVE_UP_S = 10.0
REDACTIONS = "voicebridge_log_redactions"  # the agent's log redaction set (signed URLs of live calls)
LOOP_LAG = "voicebridge_event_loop_lag_seconds"
GC_PAUSE = "voicebridge_gc_pause_seconds"  # one of the lag's causes: the collector's passes, every generation


async def concurrent(stack: StackInfo, args: argparse.Namespace, speech: bytes) -> dict[str, Any]:
    ramp = min(2.0, 0.02 * args.calls)
    before = {s: scrape(u) for s, u in stack.metrics.items()}
    tasks = [
        asyncio.create_task(
            run_call(stack.ws_url, speech, args.duration, i * ramp / max(args.calls, 1), None)
        )
        for i in range(args.calls)
    ]
    # CPU window: from the last call's start (plus a settling second) to the end of the talking time.
    await asyncio.sleep(ramp + 1.0)
    window0 = {s: scrape(u) for s, u in stack.metrics.items()}
    cpu0, t0 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    busy0, own0 = busy_cpu_seconds(), own_cpu_seconds(stack.pids)
    rss_peak: dict[str, int] = {}
    window_end = t0 + max(1.0, args.duration - 1.0)
    while time.monotonic() < window_end:
        if stack.pids:
            for name, rss in rss_bytes(stack.pids).items():
                rss_peak[name] = max(rss_peak.get(name, 0), rss)
        await asyncio.sleep(0.5)
    cpu1, t1 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    busy1, own1 = busy_cpu_seconds(), own_cpu_seconds(stack.pids)
    window1 = {s: scrape(u) for s, u in stack.metrics.items()}
    results = await asyncio.gather(*tasks)
    after = {s: scrape(u) for s, u in stack.metrics.items()}
    window = t1 - t0
    cpu = {n: cpu1[n] - cpu0[n] for n in cpu1}
    call_seconds = args.calls * window
    return {
        "results": results,
        "before": before,
        "after": after,
        "cpu": cpu,
        "window_s": window,
        "call_seconds": call_seconds,
        "rss_sampled_peak": rss_peak,
        "messages_per_call_second": message_rates(window0, window1, call_seconds),
        "grpc_wire_messages_per_call_second": wire_rates(window0, window1, call_seconds),
        "event_loop_lag_p99_ms": {
            s: ms(quantile(0.99, histogram_delta(window0[s], window1[s], LOOP_LAG)))
            for s in window1
            if s in window0
        },
        "event_loop_lag_histogram": {  # observations per bucket (upper bound in ms), not cumulative
            s: lag_histogram(histogram_delta(window0[s], window1[s], LOOP_LAG))
            for s in window1
            if s in window0
        },
        "gc_pause_histogram": {  # the same, for the collector's passes
            s: lag_histogram(histogram_delta(window0[s], window1[s], GC_PAUSE))
            for s in window1
            if s in window0
        },
        "cores_busy": {
            "services": round(sum(cpu1[n] - cpu0[n] for n in cpu1) / window, 3),
            "load_generator": round((own1 - own0) / window, 3),
            "other_processes": round(
                (busy1 - busy0 - (own1 - own0) - sum(cpu1[n] - cpu0[n] for n in cpu1)) / window, 3
            ),
        },
    }


def calls_in_progress(stack: StackInfo) -> float:
    """Calls some service still counts as in progress (the sum of the three gauges)."""
    total = 0.0
    for service, gauge in CALLS_ACTIVE.items():
        if service in stack.metrics:
            total += sum(scrape(stack.metrics[service]).get(gauge, {}).values())
    return total


async def teardown_seconds(stack: StackInfo) -> float | None:
    """From now (the hang-up) until no service counts a call in progress; None if it never gets there."""
    began = time.monotonic()
    while calls_in_progress(stack):
        if time.monotonic() - began > TEARDOWN_GIVE_UP_S:
            return None
        await asyncio.sleep(0.01)
    return time.monotonic() - began


async def sequential(stack: StackInfo, args: argparse.Namespace, speech: bytes) -> dict[str, Any]:
    before = {s: scrape(u) for s, u in stack.metrics.items()}
    rss_trend: list[dict[str, Any]] = []
    results = []
    teardowns: list[float | None] = []
    every = max(1, args.sequential // 20)
    cpu0, t0 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    for i in range(args.sequential):
        results.append(await run_call(stack.ws_url, speech, args.call_seconds, 0.0, None))
        teardowns.append(await teardown_seconds(stack))
        if stack.pids and ((i + 1) % every == 0 or i == 0):
            row: dict[str, Any] = {"calls": i + 1, **rss_bytes(stack.pids)}
            if "agent" in stack.metrics:
                await _agent_idle(stack.metrics["agent"])  # the call's session has closed its scope
                row[REDACTIONS] = scrape_value(stack.metrics["agent"], REDACTIONS)
            rss_trend.append(row)
    cpu1, t1 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    after = {s: scrape(u) for s, u in stack.metrics.items()}
    return {
        "results": results,
        "before": before,
        "after": after,
        "cpu": {n: cpu1[n] - cpu0[n] for n in cpu1},
        "window_s": t1 - t0,
        "call_seconds": t1 - t0,
        "rss_trend": rss_trend,
        "teardowns": teardowns,
    }


async def _agent_idle(url: str, timeout_s: float = 5.0) -> None:
    """Until the agent has no session open (the last call's teardown is asynchronous), or timeout_s."""
    deadline = time.monotonic() + timeout_s
    while scrape_value(url, "agent_sessions_active") and time.monotonic() < deadline:  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.02)
