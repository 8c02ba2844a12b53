"""The load report's event-loop lag histogram per service (loadgen/deltas.lag_histogram): cumulative
Prometheus buckets as counts per bucket, keyed by the bucket's upper bound in ms."""

from __future__ import annotations

from voicebridge.sim.loadgen.deltas import lag_histogram


def test_the_loop_lag_histogram_counts_each_bucket_once() -> None:
    cumulative = [(0.001, 90.0), (0.005, 98.0), (0.025, 100.0), (float("inf"), 101.0)]
    assert lag_histogram(cumulative) == {"1": 90, "5": 8, "25": 2, "+Inf": 1}


def test_an_idle_window_has_every_bucket_empty() -> None:
    assert lag_histogram([(0.001, 0.0), (float("inf"), 0.0)]) == {"1": 0, "+Inf": 0}
