"""`voicebridge-load`: the command line (what to run, SLOs to check) and the run from start to report."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from voicebridge.sim.voice import speech_like

from ..capacity import find_capacity, pin_run
from ..capacity import text as capacity_text
from .emulator import EmulatorProcess
from .procstats import machine, peak_rss_bytes
from .report import mib, report, text
from .runs import concurrent, sequential
from .stack import StackInfo, start_services

DESCRIPTION = "Load generator: N simulated Twilio callers against the real services, with pass/fail SLOs."


def _parse_kv(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="voicebridge-load", description=DESCRIPTION)
    ap.add_argument("--calls", type=int, default=10, help="concurrent calls (default 10)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds each concurrent call talks")
    ap.add_argument(
        "--sequential", type=int, default=0, metavar="M", help="M calls one after another instead"
    )
    ap.add_argument("--call-seconds", type=float, default=0.5, help="talking time of each sequential call")
    ap.add_argument(
        "--signed-urls",
        action="store_true",
        help="private agent: the agent fetches a signed URL per call (watch voicebridge_log_redactions)",
    )
    ap.add_argument("--attach", metavar="WS_URL", help="use a running stack's edge (Media Streams URL)")
    ap.add_argument("--metrics", action="append", default=[], metavar="SERVICE=URL", help="with --attach")
    ap.add_argument(
        "--pid", action="append", default=[], metavar="SERVICE=PID", help="with --attach: CPU/RSS"
    )
    ap.add_argument("--tls", action="store_true", help="mutual TLS on the gRPC hops (development certs)")
    ap.add_argument("--workdir", help="where service logs go (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--slo-cpu-ms-per-call-s", type=float, help="max CPU ms per call-second, 3 services")
    ap.add_argument("--slo-p99-added-ms", type=float, help="max p99 added latency, each way")
    ap.add_argument("--slo-gaps", type=int, help="max playback gaps over 40 ms")
    ap.add_argument("--slo-lost", type=float, help="max lost frames each way")
    ap.add_argument(
        "--slo-worst-gap-ms", type=float, help="max spacing of agent frames inside an utterance, as heard"
    )
    ap.add_argument(
        "--slo-rss-growth-mib", type=float, help="--sequential: max RSS growth of any service after warm-up"
    )
    ap.add_argument(
        "--slo-teardown-ms",
        type=float,
        help="--sequential: max p99 hang-up -> every service idle (none left)",
    )
    ap.add_argument("--pin", action="store_true", help="services on CPU 0, callers and emulator on CPU 1")
    ap.add_argument("--find-capacity", action="store_true", help="highest --calls meeting every SLO")
    ap.add_argument("--capacity-max-calls", type=int, default=400, help="--find-capacity: largest N tried")
    ap.add_argument("--capacity-step", type=int, default=5, help="--find-capacity: resolution in calls")
    ap.add_argument(
        "--capacity-repeats",
        type=int,
        default=1,
        help="--find-capacity: runs per N, every one of which must meet the SLOs",
    )
    return ap.parse_args(argv)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    args.machine = machine()
    speech = speech_like()
    emulator: EmulatorProcess | None = None
    stack: StackInfo
    if args.attach:
        metrics = _parse_kv(args.metrics)
        stack = StackInfo(args.attach, metrics, {k: int(v) for k, v in _parse_kv(args.pid).items()})
    else:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="voicebridge-load-"))
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        emulator = EmulatorProcess(requires_auth=args.signed_urls)
        await asyncio.to_thread(emulator.start)
        stack = await asyncio.to_thread(
            start_services, workdir, emulator.base_url, args.tls, None, args.signed_urls
        )
    totals = None
    # The callers' own collector must not pause them mid-run (a pause reads as the services' playback
    # gap): what exists before the calls start is frozen out of its full passes.
    gc.freeze()
    try:
        if args.pin:  # sim/capacity.py; inside the try, so that a refusal still stops the stack
            load = [emulator.proc.pid] if emulator is not None and emulator.proc.pid else []
            args.machine["pinned_cpus"] = pin_run(stack.pids.values(), load)
        run = await (sequential(stack, args, speech) if args.sequential else concurrent(stack, args, speech))
    finally:
        if not args.attach:
            # Measure peak RSS before stopping anything.
            peak = peak_rss_bytes(stack.pids)
            await asyncio.to_thread(stack.stop)
            assert emulator is not None
            totals = await asyncio.to_thread(emulator.stop)
    out = report(run, args, stack, totals)
    if not args.attach:
        out["peak_rss_mib"] = {n: mib(v) for n, v in peak.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.attach and shutil.which("voicebridge-edge", path=str(Path(sys.executable).parent)) is None:
        print("voicebridge-edge is not installed next to this Python; use --attach", file=sys.stderr)
        return 2
    out = uvloop.run(find_capacity(args, _main) if args.find_capacity else _main(args))
    print(json.dumps(out, indent=2) if args.json else (capacity_text if args.find_capacity else text)(out))
    return 0 if out["slo"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
