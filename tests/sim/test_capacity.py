"""The capacity search and pinning (sim/capacity.py): which N the search tries and where it stops,
the capacity SLOs as defaults, and every thread of a real child process moved onto one CPU."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from voicebridge.sim.capacity import (
    allowed_cpus,
    find_capacity,
    next_calls,
    pin,
    threads_of,
    with_default_slos,
)
from voicebridge.sim.loadgen.cli import parse_args


@pytest.mark.parametrize(
    ("passed", "failed", "expected"),
    [
        (None, None, 10),  # the first run: --calls
        (10, None, 20),  # doubling while every run passes
        (160, None, 200),  # ...up to the limit
        (200, None, None),  # the limit passed: done
        (None, 10, 5),  # even the first failed: bisect below it
        (40, 80, 60),
        (40, 45, None),  # within the step: done
        (None, 3, None),  # nothing passed and the first fail is within the step: capacity 0
    ],
)
def test_the_search_doubles_then_bisects_down_to_the_step(passed, failed, expected) -> None:
    assert next_calls(passed, failed, start=10, limit=200, step=5) == expected


def test_the_capacity_slos_are_the_defaults_unless_some_are_given() -> None:
    defaults = with_default_slos(parse_args(["--find-capacity"]))
    assert (defaults.slo_gaps, defaults.slo_lost, defaults.slo_p99_added_ms) == (0, 0.0, 20.0)
    own = with_default_slos(parse_args(["--find-capacity", "--slo-p99-added-ms", "40"]))
    assert (own.slo_gaps, own.slo_lost, own.slo_p99_added_ms) == (None, None, 40.0)


def fake_report(calls: int, capacity: int) -> dict:
    """A voicebridge-load report shape whose SLOs hold up to `capacity` calls."""
    met = calls <= capacity
    return {
        "slo": {"met": met},
        "added_latency": {
            "inbound_caller_to_elevenlabs": {"p99_ms": 9.0 if met else 45.0},
            "outbound_elevenlabs_to_caller": {"p99_ms": 8.0},
        },
        "playback_gaps": {"over_40ms": 0 if met else 3},
        "lost_frames": {"caller_to_elevenlabs": 0.0, "elevenlabs_to_caller": 0.0},
        "failed_calls": 0,
        "cpu_ms_per_call_second": {"total": 15.0},
        "event_loop_lag_p99_ms": {"edge": 2.0, "media": 3.0, "agent": 2.0},
        "machine": {"load_average_before": [0.1, 0.1, 0.1]},
    }


async def test_the_search_finds_the_highest_n_that_meets_every_slo() -> None:
    tried: list[int] = []

    async def run(args: argparse.Namespace) -> dict:
        tried.append(args.calls)
        assert args.slo_p99_added_ms == 20.0  # each run checks the capacity SLOs
        return fake_report(args.calls, capacity=37)

    args = parse_args(["--find-capacity", "--calls", "10", "--capacity-step", "2"])
    out = await find_capacity(args, run)
    assert out["capacity_calls"] == 37
    assert out["first_failing_calls"] == 38
    assert tried == [10, 20, 40, 30, 35, 37, 38]  # doubling to the first fail, then halving the interval
    assert [r["calls"] for r in out["runs"]] == tried
    assert all(r["met"] == (r["calls"] <= 37) for r in out["runs"])


async def test_with_repeats_an_n_holds_only_if_every_run_of_it_meets_the_slos() -> None:
    tried: list[int] = []

    async def run(args: argparse.Namespace) -> dict:
        tried.append(args.calls)
        second_try_at_30 = args.calls == 30 and tried.count(30) == 2  # one bad spell near capacity
        return fake_report(args.calls, capacity=0 if second_try_at_30 else 37)

    args = parse_args(["--find-capacity", "--calls", "10", "--capacity-step", "5", "--capacity-repeats", "2"])
    out = await find_capacity(args, run)
    assert out["capacity_calls"] == 25
    assert out["first_failing_calls"] == 30
    # 10, 20 twice each; 40 fails at once (no second run); 30 passes, then fails; then 25 twice
    assert tried == [10, 10, 20, 20, 40, 30, 30, 25, 25]
    assert out["repeats"] == 2


def test_pin_moves_every_thread_of_a_process_onto_one_cpu() -> None:
    cpu = min(os.sched_getaffinity(0))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, threading; [threading.Thread(target=sys.stdin.read, daemon=True).start()"
            " for _ in range(3)]; print('up', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up"
        tids = threads_of(child.pid)
        assert len(tids) >= 4
        pin([child.pid], cpu)
        assert all(os.sched_getaffinity(tid) == {cpu} for tid in tids)
    finally:
        child.kill()
        child.wait()


def test_a_second_pinned_run_still_sees_the_cpus_the_first_one_had() -> None:
    before = allowed_cpus()
    own = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(own)})  # what the first pinned run leaves this process with
        assert allowed_cpus() == before
    finally:
        os.sched_setaffinity(0, own)
