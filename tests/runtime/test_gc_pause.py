"""The collector's pauses are timed while a service watches its loop (runtime/metrics.py): one
observation per pass, under the pass's generation, and the hook leaves with the watcher."""

from __future__ import annotations

import asyncio
import gc

from voicebridge.runtime.metrics import GC_PAUSE, watch_loop_lag


def _passes(generation: int) -> int:
    return sum(GC_PAUSE.labels(str(generation)).counts)


async def test_every_collector_pass_is_observed_under_its_generation_while_watching() -> None:
    hooks = len(gc.callbacks)
    watcher = asyncio.create_task(watch_loop_lag(interval_s=60))
    await asyncio.sleep(0)  # the watcher installs its hook when it starts
    assert len(gc.callbacks) == hooks + 1
    full, young = _passes(2), _passes(0)
    gc.collect(2)
    gc.collect(0)
    gc.collect(0)
    assert _passes(2) >= full + 1  # the interpreter may run passes of its own meanwhile: at least ours
    assert _passes(0) >= young + 2
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert len(gc.callbacks) == hooks
    after = _passes(2)
    gc.collect(2)
    assert _passes(2) == after
