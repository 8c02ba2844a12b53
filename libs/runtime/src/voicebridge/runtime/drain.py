"""Draining a service on SIGTERM without hanging up on anyone who is mid-sentence.

Why: a rolling deploy stops every replica in turn. A replica told to stop first says NOT_SERVING
(health and readiness; the clients balancing over replicas, runtime/replicas.py, then send it no new
call, and one that arrives anyway is refused so that it is placed elsewhere), then lets its calls in
progress run to their natural end for up to DRAIN_DEADLINE_S. Calls still going at the deadline are
ended by the service with a spoken goodbye and a clean hang-up (each service says how), and the
process exits 0. The gauges show which replicas are draining and how many calls they still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge

log = logging.getLogger(__name__)

DRAINING = Gauge("voicebridge_draining", "1 while this process drains its calls before it stops", ["service"])
CALLS_LEFT = Gauge(
    "voicebridge_drain_calls_left", "Calls still in progress on this process while it drains", ["service"]
)
# After the deadline: how long the goodbye and the hang-up may take before the process stops anyway.
GOODBYE_TIMEOUT_S = 15.0


class Drain:
    """The calls a process has in progress, and its drain: `draining` refuses new ones."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.draining = False
        self._calls: set[Any] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = DRAINING.labels(service)
        self._left = CALLS_LEFT.labels(service)
        self._draining.set(0)
        self._left.set(0)

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, call: Any) -> None:
        self._calls.add(call)
        self._idle.clear()
        if self.draining:
            self._left.set(len(self._calls))

    def discard(self, call: Any) -> None:
        self._calls.discard(call)
        if self.draining:
            self._left.set(len(self._calls))
        if not self._calls:
            self._idle.set()

    async def run(
        self, deadline_s: float, end: Callable[[Any], None], goodbye_timeout_s: float = GOODBYE_TIMEOUT_S
    ) -> int:
        """Drain: wait up to `deadline_s` for the calls to end, then `end` each one left (a goodbye and
        a hang-up) and wait for those too. Returns how many calls had to be ended."""
        self.draining = True
        self._draining.set(1)
        self._left.set(len(self._calls))
        log.info("%s draining: %d calls in progress, deadline %.0fs", self.service, len(self), deadline_s)
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.001, deadline_s))
        if not self._calls:
            return 0
        left = list(self._calls)
        log.warning("%s drain deadline: ending %d calls with a goodbye", self.service, len(left))
        for call in left:
            end(call)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), goodbye_timeout_s)
        return len(left)
