"""Calls per core: pin the services to one core and the load to another (`voicebridge-load --pin`),
and search for the highest number of concurrent calls that meets every SLO (`--find-capacity`).

Why pinned: on a shared two-core machine the services and the load generator take CPU from each other,
so "how many calls fit" depends on what else ran. With the three services on core 0 (every thread,
`os.sched_setaffinity`) and the callers and the ConvAI emulator on core 1, the services have exactly one
core: the highest N that meets the SLOs there is the bridge's calls per core.

The search: one full `voicebridge-load` run per N (a fresh stack each time; `--capacity-repeats K`: K
runs, every one of which must pass, since near capacity one bad spell decides), from `--calls` upwards,
doubling while every SLO holds, then halving the interval between the highest N that passed and the
lowest that failed until it is `--capacity-step` calls wide. SLOs default to the capacity target:
0 playback gaps, 0 lost frames, p99 added latency ≤ 20 ms each way (and no failed call); any given on
the command line replace them. A single run is a measurement on a machine that may be busy: the
report lists every run with the load average next to it.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

SERVICES_CPU = 0
LOAD_CPU = 1
DEFAULT_SLOS = {"slo_gaps": 0, "slo_lost": 0.0, "slo_p99_added_ms": 20.0}


def threads_of(pid: int) -> list[int]:
    """Every thread of a process (Linux: /proc/PID/task); [] if it has gone."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def pin(pids: Iterable[int], cpu: int) -> None:
    """Every thread of each process onto `cpu`; threads they start later inherit it."""
    for pid in pids:
        for tid in threads_of(pid) or [pid]:
            try:
                os.sched_setaffinity(tid, {cpu})
            except ProcessLookupError:
                continue  # a thread that ended meanwhile


@functools.cache
def allowed_cpus() -> frozenset[int]:
    """The CPUs this process could use before the first pin (which narrows its own affinity to one)."""
    return frozenset(os.sched_getaffinity(0))


def pin_run(service_pids: Iterable[int], load_pids: Iterable[int]) -> dict[str, int]:
    """Services on core 0, the load (this process and the emulator) on core 1."""
    cpus = allowed_cpus()
    if not {SERVICES_CPU, LOAD_CPU} <= cpus:
        raise SystemExit(f"--pin needs CPUs {SERVICES_CPU} and {LOAD_CPU}; this process has {sorted(cpus)}")
    pin(service_pids, SERVICES_CPU)
    pin([os.getpid(), *load_pids], LOAD_CPU)
    return {"services": SERVICES_CPU, "load": LOAD_CPU}


def with_default_slos(args: argparse.Namespace) -> argparse.Namespace:
    """The capacity SLOs, unless the command line gave its own."""
    out = copy.copy(args)
    given = any(getattr(args, name) is not None for name in DEFAULT_SLOS)
    if not given:
        for name, value in DEFAULT_SLOS.items():
            setattr(out, name, value)
    return out


def next_calls(passed: int | None, failed: int | None, start: int, limit: int, step: int) -> int | None:
    """The next N to try, or None when the search is done: doubling from `start` while every run
    passes, then bisecting between the highest pass and the lowest fail down to `step` calls."""
    if passed is None and failed is None:
        return start
    if failed is None:
        assert passed is not None
        return None if passed >= limit else min(limit, passed * 2)
    low = passed or 0
    if failed - low <= step:
        return None
    return max(1, (low + failed) // 2)


def summary(n: int, out: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run that decide it, for the search's table."""
    lat = out["added_latency"]
    return {
        "calls": n,
        "met": out["slo"]["met"],
        "p99_in_ms": lat["inbound_caller_to_elevenlabs"]["p99_ms"],
        "p99_out_ms": lat["outbound_elevenlabs_to_caller"]["p99_ms"],
        "gaps": out["playback_gaps"]["over_40ms"],
        "lost_in": out["lost_frames"]["caller_to_elevenlabs"],
        "lost_out": out["lost_frames"]["elevenlabs_to_caller"],
        "failed_calls": out["failed_calls"],
        "cpu_ms_per_call_s": out["cpu_ms_per_call_second"]["total"],
        "event_loop_lag_p99_ms": out.get("event_loop_lag_p99_ms"),
        "load_average_before": out["machine"].get("load_average_before"),
        "cores_busy": out["machine"].get("cores_busy_during_window"),
    }


async def find_capacity(
    args: argparse.Namespace, run: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run `run` (one voicebridge-load run) at each N the search picks; the highest N that met every SLO."""
    args = with_default_slos(args)
    passed: int | None = None
    failed: int | None = None
    runs: list[dict[str, Any]] = []
    while True:
        n = next_calls(passed, failed, args.calls, args.capacity_max_calls, args.capacity_step)
        if n is None:
            break
        met = True
        for attempt in range(max(1, args.capacity_repeats)):  # N holds only if every run of it does
            trial = copy.copy(args)
            trial.calls = n
            if args.workdir:
                trial.workdir = str(Path(args.workdir) / f"calls-{n}-{attempt + 1}")
            row = summary(n, await run(trial))
            runs.append(row)
            if not row["met"]:
                met = False
                break
        if met:
            passed = n if passed is None else max(passed, n)
        else:
            failed = n if failed is None else min(failed, n)
    slos = {name.removeprefix("slo_"): getattr(args, name) for name in vars(args) if name.startswith("slo_")}
    return {
        "mode": "find_capacity",
        "pinned": bool(args.pin),
        "capacity_calls": passed or 0,
        "first_failing_calls": failed,
        "slos": {k: v for k, v in slos.items() if v is not None},
        "duration_s": args.duration,
        "repeats": max(1, args.capacity_repeats),
        "runs": runs,
        "slo": {"met": passed is not None, "checks": {}},
    }


def text(out: dict[str, Any]) -> str:
    lines = [
        f"capacity: {out['capacity_calls']} calls (first failing: {out['first_failing_calls']}); "
        f"pinned: {out['pinned']}; SLOs {out['slos']}",
        "calls  met    p99 in/out ms    gaps  lost in/out  CPU ms/call-s  loop lag p99 ms (e/m/a)  load avg",
    ]
    for r in out["runs"]:
        lag = r["event_loop_lag_p99_ms"] or {}
        lags = "/".join(str(lag.get(s)) for s in ("edge", "media", "agent"))
        lines.append(
            f"{r['calls']:5d}  {'yes' if r['met'] else 'no ':3s}"
            f"  {r['p99_in_ms']!s:>7}/{r['p99_out_ms']!s:<7}"
            f"  {r['gaps']:4d}  {r['lost_in']!s:>5}/{r['lost_out']!s:<5}  {r['cpu_ms_per_call_s']!s:>13}"
            f"  {lags:>23}  {r['load_average_before']}"
        )
    return "\n".join(lines)
