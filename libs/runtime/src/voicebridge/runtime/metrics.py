"""Prometheus conventions shared by every service: latency buckets, the /metrics server, loop lag.

Names follow Prometheus practice (docs/prometheus.md): base units, `_total` counters, no per-call labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import Gauge

from .loop_metrics import Histogram

# 1 ms to 5 s, geometric-ish, with SLO thresholds (5/20/40/100/150 ms) as exact bounds, 3 and 7.5 ms
# so a p99 near the 5 ms added-latency SLO is resolved, and one finite bucket above 2 s so
# histogram_quantile does not clamp real outliers to the top bound.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15,
    0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
)  # fmt: skip
# Sub-millisecond work per frame (codec, resampling, pacing): 10 µs to 50 ms.
PROCESSING_BUCKETS = (
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
)  # fmt: skip

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

BUILD_INFO = Gauge("voicebridge_build_info", "Build of this service (value 1)", ["service", "version"])
TASKS = Gauge("voicebridge_asyncio_tasks", "asyncio tasks alive in this process (leak watch)")
LOOP_LAG = Histogram(
    "voicebridge_event_loop_lag_seconds",
    "How late the asyncio event loop ran a timer that was due (a busy or blocked loop)",
    buckets=LATENCY_BUCKETS,
)

GC_PAUSE = Histogram(
    "voicebridge_gc_pause_seconds",
    "How long each pass of Python's cyclic garbage collector stopped the process, by generation",
    ["generation"],
    buckets=LATENCY_BUCKETS,
)


class _GcTimer:
    """A gc.callbacks entry timing every collector pass: a full (generation 2) pass walks every
    object the process holds and stops the event loop meanwhile, which shows as loop lag and, past the
    playout lead, as a gap in what callers hear."""

    def __init__(self) -> None:
        self._began = 0.0
        self._children = [GC_PAUSE.labels(str(g)) for g in range(3)]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self._children[min(int(info.get("generation", 2)), 2)].observe(time.perf_counter() - self._began)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> WSGIServer | None:
    """Serve /metrics on a daemon thread; returns the server (shut it down on exit). 0 disables.

    Its own listener in every service, never the Twilio-facing port; loopback unless METRICS_HOST says."""
    if port <= 0:
        return None
    server, _thread = prometheus_client.start_http_server(port, addr=host)
    return server


async def watch_loop_lag(interval_s: float = 0.1, tasks_every: int = 5) -> None:
    """Observe event-loop lag until cancelled: the loop is the one resource every call shares. The
    collector's pauses, one of the lag's causes, are timed meanwhile (GC_PAUSE).

    Every `tasks_every` ticks it also counts live asyncio tasks, so a leak shows on a dashboard."""
    loop = asyncio.get_running_loop()
    tick = 0
    gc_timer = _GcTimer()
    gc.callbacks.append(gc_timer)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                due = loop.time() + interval_s
                await asyncio.sleep(interval_s)
                LOOP_LAG.observe(max(0.0, loop.time() - due))
                tick += 1
                if tick % tasks_every == 0:
                    TASKS.set(len(asyncio.all_tasks(loop)))
    finally:
        gc.callbacks.remove(gc_timer)
