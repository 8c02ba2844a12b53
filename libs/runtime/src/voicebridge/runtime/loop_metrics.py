"""Counters and histograms for the per-frame path: prometheus_client's API, without its locks.

Why: prometheus_client takes a `threading.Lock` on every `inc` and walks a histogram's buckets in
Python on every `observe`. A call updates several metrics per 20 ms frame on every hop, and that
was 15-25 % of each service's CPU under load. Every voicebridge service updates its metrics from one
thread, the asyncio loop, so a plain add is enough. The /metrics thread only reads, at scrape time,
through a collector registered like any other; the exposition (`_total`, `_bucket{le}`, `_sum`,
`_count`) is the same as prometheus_client's, so dashboards and alerts do not change.

Gauges stay prometheus_client's: they are set rarely, not per frame.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.core import REGISTRY, CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

__all__ = ["Counter", "Histogram"]


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, amount)] += 1  # le: value <= bound
        self.sum += amount


ChildT = TypeVar("ChildT", CounterChild, HistogramChild)


class _Family(Collector, Generic[ChildT]):
    """A metric with fixed label names; children are created on first use, like prometheus_client's."""

    _kind = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], ChildT] = {}
        if not self._labelnames:
            self._children[()] = self._new_child()
        if registry is not None:
            registry.register(self)

    def _new_child(self) -> ChildT:
        raise NotImplementedError

    def labels(self, *values: object, **named: object) -> ChildT:
        if named:
            if values:
                raise ValueError("use positional or keyword label values, not both")
            try:
                values = tuple(named[n] for n in self._labelnames)
            except KeyError as exc:
                raise ValueError(f"missing label {exc} for {self._name}") from None
            if len(named) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self._labelnames) or not key:
                raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values!r}")
            child = self._children[key] = self._new_child()
        return child

    def _unlabelled(self) -> ChildT:
        if self._labelnames:
            raise ValueError(f"{self._name} has labels {self._labelnames}: use .labels() first")
        return self._children[()]

    def _items(self) -> list[tuple[tuple[str, ...], ChildT]]:
        return list(self._children.items())  # one C call: safe against the loop adding a child

    def describe(self) -> list[Metric]:
        return [self._empty()]

    def _empty(self) -> Metric:
        raise NotImplementedError


class Counter(_Family[CounterChild]):
    """prometheus_client.Counter's `labels(...).inc()` / `inc()`, exposed as `<name>_total`."""

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)

    def _empty(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._empty()
        for key, child in self._items():
            family.add_metric(list(key), child.value)
        yield family


class Histogram(_Family[HistogramChild]):
    """prometheus_client.Histogram's `observe()` (and `labels(...).observe()`), same exposition."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        buckets: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram buckets must be sorted, distinct and not empty")
        self._bounds = bounds
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def observe(self, amount: float) -> None:
        self._unlabelled().observe(amount)

    def _empty(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._empty()
        names = [*map(floatToGoString, self._bounds), "+Inf"]
        for key, child in self._items():
            counts, total = list(child.counts), child.sum
            cumulative, running = [], 0
            for le, count in zip(names, counts, strict=True):
                running += count
                cumulative.append((le, running))
            family.add_metric(list(key), cumulative, total)
        yield family
