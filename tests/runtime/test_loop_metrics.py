"""loop_metrics must expose exactly what prometheus_client would: dashboards and alerts read the names."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from voicebridge.runtime import loop_metrics

BUCKETS = (0.00001, 0.001, 0.005, 1.0, 5.0)


def _populate(module, registry: CollectorRegistry) -> None:
    frames = module.Counter("x_frames", "frames", ["direction"], registry=registry)
    frames.labels("in").inc()
    frames.labels(direction="out").inc(2.5)
    frames.labels("never")  # a child made but not used: exposed at 0
    plain = module.Counter("y_total", "an unlabelled counter named with _total", registry=registry)
    plain.inc()
    latency = module.Histogram("z_seconds", "latency", ["kind"], buckets=BUCKETS, registry=registry)
    for value in (0.000001, 0.00001, 0.003, 0.005, 2.0, 7.0):  # below, on and between bounds, past the top
        latency.labels("a").observe(value)
    latency.labels("b")
    module.Histogram("w_seconds", "unlabelled", buckets=BUCKETS, registry=registry).observe(0.002)


def test_exposition_is_identical_to_prometheus_client():
    prometheus_client.disable_created_metrics()
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    _populate(prometheus_client, theirs)
    _populate(loop_metrics, ours)
    assert generate_latest(ours).decode() == generate_latest(theirs).decode()


def test_a_value_on_a_bucket_bound_counts_in_that_bucket():
    registry = CollectorRegistry()
    h = loop_metrics.Histogram("h_seconds", "h", buckets=(0.001, 0.002), registry=registry)
    h.observe(0.001)
    assert registry.get_sample_value("h_seconds_bucket", {"le": "0.001"}) == 1
    assert registry.get_sample_value("h_seconds_count") == 1
    assert registry.get_sample_value("h_seconds_sum") == pytest.approx(0.001)


def test_wrong_labels_and_negative_increments_are_refused():
    registry = CollectorRegistry()
    c = loop_metrics.Counter("c", "c", ["a"], registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        c.labels("1", "2")
    with pytest.raises(ValueError, match="has labels"):
        c.inc()  # labelled: needs .labels() first
    with pytest.raises(ValueError, match="only go up"):
        c.labels("1").inc(-1)
    with pytest.raises(ValueError, match="sorted"):
        loop_metrics.Histogram("h", "h", buckets=(2.0, 1.0), registry=registry)


def test_a_name_registered_twice_is_refused_like_prometheus_client():
    registry = CollectorRegistry()
    loop_metrics.Counter("dup", "first", registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        loop_metrics.Counter("dup", "second", registry=registry)
