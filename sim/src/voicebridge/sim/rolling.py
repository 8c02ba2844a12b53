"""Rolling restart under load: every replica of every service replaced, one at a time, calls arriving.

    voicebridge-rolling --json --slo-dropped 0 --slo-lost 0 --slo-gaps 0

What Kubernetes does on a deploy (RollingUpdate, maxSurge 1, maxUnavailable 0), on loopback with real
processes (replica_stack.py): two edges, three media and two agents (the `elevenlabs` backend against
the ConvAI emulator, in a process of its own, as voicebridge-load runs it). Calls keep arriving at
`--rate` per second, spread over the ready edges in turn (the Ingress's part); each talks for
`--call-seconds` (loadgen's caller: speaks, waits for the echo, again), then hangs up. Once the first
calls are up, each old replica in turn (agents, then media, then edges): a replacement is started and
listed in the name once ready; the old one is taken out of the name (a terminating pod leaves its
Service's endpoints) and sent SIGTERM; the tool waits for it to drain and exit (code 0 expected).

Printed: calls started, completed (heard the agent, ended by the caller, no protocol violation) and
dropped (anything else), playback gaps over 40 ms inside an utterance and the worst spacing (as
voicebridge-load counts them), lost frames each way (caller audio sent vs what the emulator received,
and the reverse), calls per replica (from each replica's log), and each restart's drain time and exit
code. SLO flags make the exit code 1 when a figure is over its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from voicebridge.sim.loadgen import (
    FRAME_BYTES,
    GAP_S,
    RATE,
    UTTERANCE_BREAK_S,
    CallResult,
    EmulatorProcess,
    gaps,
    run_call,
)
from voicebridge.sim.replica_stack import CALL_STARTED, Replica, ReplicaStack, count_in_log
from voicebridge.sim.voice import speech_like

ORDER = ("agent", "media", "edge")


class Rollout:
    """The stack, the calls arriving, and the restarts."""

    def __init__(self, stack: ReplicaStack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.ready_edges: list[Replica] = []
        self.calls: list[asyncio.Task[CallResult]] = []
        self.call_began: list[float] = []  # when each call was placed (its timeline's zero, roughly)
        self.restarts: list[dict[str, Any]] = []
        self.stalls: list[float] = []
        self.t0 = time.monotonic()
        self._turn = itertools.count()
        self._speech = speech_like()

    def start(self, service: str, startup_nice: int = 0) -> Replica:
        replica = self.stack.start(service, startup_nice=startup_nice)
        if service == "edge":
            self.ready_edges.append(replica)
        return replica

    async def watch_own_loop(self, stop: asyncio.Event) -> None:
        """Note when this process's event loop ran a 10 ms timer over 40 ms late."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            if loop.time() - due > GAP_S:
                self.stalls.append(round(due - self.t0, 1))

    async def arrivals(self, stop: asyncio.Event) -> None:
        """A new call every 1/rate s on the next ready edge, until `stop`."""
        while not stop.is_set():
            edge = self.ready_edges[next(self._turn) % len(self.ready_edges)]
            call = run_call(edge.ws_url, self._speech, self.args.call_seconds, 0.0, None)
            self.calls.append(asyncio.create_task(call))
            self.call_began.append(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0 / self.args.rate)

    async def replace(self, old: Replica) -> None:
        """Surge one replacement, then take the old replica out and let it drain."""
        surge = time.monotonic()
        new = await asyncio.to_thread(self.start, old.service, self.args.startup_nice)
        if old in self.ready_edges:
            self.ready_edges.remove(old)
        self.stack.unlist(old)
        began = time.monotonic()
        old.terminate()
        code = await asyncio.to_thread(old.wait, self.args.drain_deadline + 60.0)
        self.restarts.append(
            {
                "replaced": old.name,
                "by": new.name,
                "started_at_s": round(surge - self.t0, 1),
                "ready_after_s": round(began - surge, 2),
                "drain_s": round(time.monotonic() - began, 2),
                "exit_code": code,
            }
        )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    emulator = EmulatorProcess()
    emulator_url = await asyncio.to_thread(emulator.start)
    drain = {"DRAIN_DEADLINE_S": str(args.drain_deadline)}
    stack = ReplicaStack(
        workdir,
        {
            "agent": {
                "AGENT_BACKEND": "elevenlabs",
                "ELEVENLABS_AGENT_ID": "load",
                "ELEVENLABS_BASE_URL": emulator_url,
                **drain,
            },
            "media": drain,
            "edge": drain,
        },
    )
    rollout = Rollout(stack, args)
    emu: dict[str, int] | None = None
    began = time.monotonic()
    try:
        counts = {"agent": args.agents, "media": args.media, "edge": args.edges}
        for service in ORDER:
            for _ in range(counts[service]):
                await asyncio.to_thread(rollout.start, service)
        originals = {s: stack.running(s) for s in ORDER}
        stop = asyncio.Event()
        arrivals = asyncio.create_task(rollout.arrivals(stop))
        calls_over = asyncio.Event()
        watch = asyncio.create_task(rollout.watch_own_loop(calls_over))
        await asyncio.sleep(args.call_seconds / 2)  # calls in progress on every replica first
        if args.no_restart:  # the same load on the same stack, nothing restarted: the baseline
            await asyncio.sleep(args.duration)
        for service in () if args.no_restart else ORDER:
            for old in originals[service]:
                await rollout.replace(old)
        await asyncio.sleep(args.call_seconds / 2)  # and some calls on the new replicas only
        stop.set()
        await arrivals
        results = await asyncio.gather(*rollout.calls)
        calls_over.set()
        await watch
    finally:
        stop_codes = await asyncio.to_thread(stack.stop)
        emu = await asyncio.to_thread(emulator.stop)
    return report(rollout, results, emu, stop_codes, time.monotonic() - began)


def gap_times(spans: list[tuple[int, int]]) -> list[float]:
    """Where on the call's timeline (s) playback ran dry for over 40 ms inside an utterance (the
    holes loadgen.gaps counts)."""
    frame = FRAME_BYTES / RATE
    at = []
    for (_, end), (start, _) in itertools.pairwise(spans):
        hole = (start - end) / RATE
        if hole < UTTERANCE_BREAK_S and hole + frame > GAP_S + 1e-9:
            at.append(end / RATE)
    return at


def _completed(result: CallResult) -> bool:
    s = result.summary
    return (
        result.error is None and s["closed_by"] == "caller" and not s["violations"] and s["bytes_heard"] > 0
    )


def report(
    rollout: Rollout,
    results: list[CallResult],
    emu: dict[str, int] | None,
    stop_codes: dict[str, int | None],
    elapsed_s: float,
) -> dict[str, Any]:
    gap_counts = [gaps(r.heard_spans) for r in results]
    caller_sent = sum(r.voice_bytes_sent for r in results)
    agent_heard = sum(r.bytes_received for r in results)
    per_replica = {r.name: count_in_log(r, CALL_STARTED[r.service]) for r in rollout.stack.replicas}
    dropped = [r for r in results if not _completed(r)]
    offsets = [b - rollout.t0 for b in rollout.call_began]
    gaps_at = sorted(
        (round(o + t, 1), r.summary["call_sid"])
        for o, r in zip(offsets, results, strict=True)
        for t in gap_times(r.heard_spans)
    )
    return {
        "mode": "baseline (no restart)" if rollout.args.no_restart else "rolling restart",
        "startup_nice": rollout.args.startup_nice,
        "replicas": {"edge": rollout.args.edges, "media": rollout.args.media, "agent": rollout.args.agents},
        "elapsed_s": round(elapsed_s, 1),
        "calls_started": len(results),
        "calls_completed": len(results) - len(dropped),
        "calls_dropped": len(dropped),
        "drop_reasons": sorted(
            {r.error or f"closed by {r.summary['closed_by']} {r.summary['violations']}" for r in dropped}
        )[:5],
        "playback_gaps": {
            "over_40ms": sum(c for c, _ in gap_counts),
            "worst_in_utterance_ms": round(max((w for _, w in gap_counts), default=0.0) * 1000, 1),
            # When (s since the start, beside the restarts' times) and in which call (its logs).
            "at_s": [{"at_s": at, "call_sid": sid} for at, sid in gaps_at],
            # The measuring side's own event loop running late: callers then count gaps that the
            # services did not cause (several calls at the same instant).
            "load_generator_stalls_at_s": rollout.stalls,
        },
        "lost_frames": {
            "caller_to_elevenlabs": None
            if emu is None
            else round((caller_sent - emu["received_bytes"]) / FRAME_BYTES, 1),
            "elevenlabs_to_caller": None
            if emu is None
            else round((emu["sent_bytes"] - agent_heard) / FRAME_BYTES, 1),
        },
        "calls_per_replica": per_replica,
        "restarts": rollout.restarts,
        "exit_codes_at_the_end": stop_codes,
    }


def slo(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    if args.slo_dropped is not None:
        checks["dropped"] = out["calls_dropped"] <= args.slo_dropped
    if args.slo_gaps is not None:
        checks["gaps"] = out["playback_gaps"]["over_40ms"] <= args.slo_gaps
    if args.slo_lost is not None:
        lost = [v for v in out["lost_frames"].values() if v is not None]
        checks["lost"] = len(lost) == 2 and all(v <= args.slo_lost for v in lost)
    codes = [r["exit_code"] for r in out["restarts"]]
    checks["drained_exit_0"] = all(c == 0 for c in codes)
    return {"checks": checks, "pass": all(checks.values())}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="voicebridge-rolling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--edges", type=int, default=2)
    ap.add_argument("--media", type=int, default=3)
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--rate", type=float, default=2.0, help="new calls per second (default 2)")
    ap.add_argument("--call-seconds", type=float, default=6.0, help="talking time of each call")
    ap.add_argument("--drain-deadline", type=float, default=120.0, help="DRAIN_DEADLINE_S of every replica")
    ap.add_argument(
        "--startup-nice",
        type=int,
        default=0,
        metavar="N",
        help="start each replacement at nice N until it is ready (a new pod's own CPU, on one machine)",
    )
    ap.add_argument(
        "--no-restart",
        action="store_true",
        help="baseline: the same stack and load for --duration s, restarting nothing",
    )
    ap.add_argument("--duration", type=float, default=60.0, help="with --no-restart (default 60)")
    ap.add_argument("--workdir", help="where the replicas' logs go (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--slo-dropped", type=int, help="max calls dropped")
    ap.add_argument("--slo-gaps", type=int, help="max playback gaps over 40 ms")
    ap.add_argument("--slo-lost", type=float, help="max lost frames each way")
    args = ap.parse_args(argv)
    if min(args.edges, args.media, args.agents) < 1 or args.rate <= 0:
        ap.error("every service needs at least one replica, and --rate must be positive")
    if args.startup_nice and os.geteuid() != 0:  # raising a priority back needs CAP_SYS_NICE
        ap.error("--startup-nice needs root, to restore each replica's priority once it is ready")
    return args


def _text(out: dict[str, Any]) -> str:
    lines = [
        f"{out['mode']}: replicas {out['replicas']}, {out['elapsed_s']} s",
        f"calls: {out['calls_started']} started, {out['calls_completed']} completed, "
        f"{out['calls_dropped']} dropped",
        f"playback gaps > 40 ms: {out['playback_gaps']['over_40ms']} "
        f"(worst {out['playback_gaps']['worst_in_utterance_ms']} ms)",
        f"lost frames: {out['lost_frames']}",
        "calls per replica: " + ", ".join(f"{k} {v}" for k, v in out["calls_per_replica"].items()),
    ]
    lines += [
        f"  {r['replaced']} -> {r['by']}: drained in {r['drain_s']} s, exit {r['exit_code']}"
        for r in out["restarts"]
    ]
    if out["drop_reasons"]:
        lines.append(f"drops: {out['drop_reasons']}")
    if "slo" in out:
        lines.append(f"SLO: {'pass' if out['slo']['pass'] else 'FAIL'} {out['slo']['checks']}")
    return "\n".join(lines)


def run_and_report(
    args: argparse.Namespace,
    prog: str,
    run: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, dict[str, Any]]],
    slo: Callable[[dict[str, Any], argparse.Namespace], dict[str, Any]],
    text: Callable[[dict[str, Any]], str],
) -> int:
    """A stack command's run (in `--workdir` or a temporary one), its SLOs, the report printed as
    text or `--json`; the exit code 1 when an SLO fails. Shared by the commands on the replica stack."""
    with tempfile.TemporaryDirectory(prefix=f"{prog}-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        # The callers here are the measuring side: a cyclic-GC pass over every call's recorded
        # messages would stall all of them at once and be counted as the services' gaps. What the
        # run allocates is freed by reference counting; the collector runs again after it.
        gc.disable()
        try:
            out = uvloop.run(run(args, workdir))
        finally:
            gc.enable()
    out["slo"] = slo(out, args)
    print(json.dumps(out, indent=2) if args.json else text(out))
    return 0 if out["slo"]["pass"] else 1


def main(argv: list[str] | None = None) -> int:
    return run_and_report(parse_args(argv), "voicebridge-rolling", run, slo, _text)


if __name__ == "__main__":
    sys.exit(main())
