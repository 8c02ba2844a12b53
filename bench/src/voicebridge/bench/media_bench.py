"""Media DSP benchmark: CPU per call-second, resampler quality, and PESQ-NB, against the naive audioop path.

Run `voicebridge-media-bench` (or `python -m voicebridge.bench.media_bench`); `--json` prints one JSON object.
It is a report, not a test: the exit code is 0 whatever the numbers. scipy and pesq (the `bench` extra) are
needed for the quality and PESQ sections and espeak-ng for speech; missing pieces are reported as unavailable.

CPU is `time.process_time` over a stream of 20 ms frames, 50 in + 50 out per call-second, the median of
several runs. Inbound = μ-law decode (once, shared) + WebRtcVad (10 ms frames) + CallerAudioConverter;
outbound = AgentAudioConverter. The naive path is `audioop.ulaw2lin`/`ratecv`/`lin2ulaw` with the same VAD.

Its parts: `signals` (test signals, measures, speech), `audio_paths` (the two implementations
compared), `media_bench_report` (the text tables); this module runs the sections and checks the
targets.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from voicebridge.media.audio.convert import SUPPORTED_FORMATS, AgentAudioConverter, Format
from voicebridge.media.audio.g711 import ulaw_decode, ulaw_encode
from voicebridge.media.audio.resample import make_resampler

from . import audio_paths as paths
from . import signals as sig
from .media_bench_report import render
from .signals import FRAME_S, PHONE

__all__ = ["collect", "main", "render"]

AGENT_RATES = (16000, 22050, 24000, 44100, 48000)
TARGETS = {
    "cpu_16k_us": 1000.0,
    "cpu_ulaw_us": 200.0,
    "pesq_gap": 0.05,
    "alias_db": 70.0,
    "image_db": 70.0,
    "ripple_db": 0.1,
}


def _cpu_per_call_second(
    inbound: Callable[[bytes, int], None],
    outbound: Callable[[bytes], bytes],
    frames_in: list[bytes],
    frames_out: list[bytes],
    seconds: float,
) -> dict[str, float]:
    t0 = time.process_time()
    for i, f in enumerate(frames_in):
        inbound(f, i * 20)
    t1 = time.process_time()
    for f in frames_out:
        outbound(f)
    t2 = time.process_time()
    return {"inbound": (t1 - t0) / seconds * 1e6, "outbound": (t2 - t1) / seconds * 1e6}


def cpu_section(seconds: float, repeats: int, speech_22k: np.ndarray | None) -> dict[str, Any]:
    """µs of CPU per call-second, per agent format, for both implementations."""
    n = max(1, round(seconds / FRAME_S))
    if speech_22k is not None:
        src22 = np.tile(speech_22k, math.ceil(seconds * 22050 / len(speech_22k)) + 1)
    else:
        src22 = sig.tone(440, 22050, seconds + 1) * (
            1 + np.sin(np.arange(round(22050 * (seconds + 1))) / 3000)
        )
    inbound_ulaw = ulaw_encode(sig.pcm(_quick_resample(src22, PHONE)))
    frames_in = sig.chunks(inbound_ulaw, 160)[:n]
    impls: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "voicebridge": (paths.inbound_ours, paths.outbound_ours)
    }
    if paths.NAIVE_AVAILABLE:
        impls["naive_audioop"] = (paths.inbound_naive, paths.outbound_naive)
    out: dict[str, Any] = {"seconds": n * FRAME_S, "repeats": repeats}
    for name, (mk_in, mk_out) in impls.items():
        per_fmt: dict[str, Any] = {}
        for fmt in SUPPORTED_FORMATS:
            agent = inbound_ulaw if fmt.encoding == "mulaw" else sig.pcm(_quick_resample(src22, fmt.rate))
            size = round(fmt.bytes_per_second * FRAME_S)
            frames_out = sig.chunks(agent, size)[:n]
            runs = [
                _cpu_per_call_second(mk_in(fmt), mk_out(fmt), frames_in, frames_out, n * FRAME_S)
                for _ in range(repeats)
            ]
            inbound = statistics.median(r["inbound"] for r in runs)
            outbound = statistics.median(r["outbound"] for r in runs)
            per_fmt[fmt.name] = {"inbound": inbound, "outbound": outbound, "total": inbound + outbound}
        out[name] = per_fmt
    if not paths.NAIVE_AVAILABLE:
        out["naive_audioop"] = None
    return out


def _quick_resample(x22k: np.ndarray, rate: int) -> np.ndarray:
    """Test-signal resampling that needs no scipy (our own resampler, whole signal at once)."""
    return sig.arr(make_resampler(22050, rate).process(sig.pcm(x22k)))


def _resampler_metrics(make: Callable[[int, int], Any]) -> dict[str, Any]:
    from scipy.signal import resample_poly  # bench extra

    delay: dict[str, float] = {}
    rng = np.random.default_rng(0)
    band8k = resample_poly(resample_poly(rng.standard_normal(PHONE), 3, 1), 1, 3) * 4000  # < 3.3 kHz
    for rate in AGENT_RATES:
        g = math.gcd(rate, PHONE)
        hi = resample_poly(band8k, rate // g, PHONE // g)
        for a, b, x in ((PHONE, rate, band8k), (rate, PHONE, hi)):
            ga = math.gcd(a, b)
            ideal = resample_poly(x, b // ga, a // ga)  # zero-phase reference
            y = sig.stream(make(a, b).process, x, a)
            # µs precision: the sub-sample peak estimate is not finer than that
            delay[f"{a}->{b}"] = round(sig.xcorr_lag(ideal[: len(y)], y) / b * 1000, 3)
    alias = {}
    for rate in AGENT_RATES:
        x = sig.tone(5000, rate, 0.6)
        y = sig.steady(sig.stream(make(rate, PHONE).process, x, rate), PHONE)
        alias[f"{rate}->8000"] = 20 * math.log10(sig.rms(x) / max(sig.rms(y), 1e-9))
    image = {}
    for rate in (16000, 24000, 48000):
        y = sig.steady(sig.stream(make(PHONE, rate).process, sig.tone(1000, PHONE, 0.6), PHONE), rate)
        image[f"8000->{rate}"] = -sig.energy_above_db(y, rate, 4000)
    ripple = {}
    for a, b in ((16000, PHONE), (24000, PHONE), (PHONE, 16000), (PHONE, 24000)):
        gains = [
            20
            * math.log10(
                sig.sine_amp(sig.steady(sig.stream(make(a, b).process, sig.tone(f, a, 0.4), a), b), f, b)
                / 16000
            )
            for f in range(200, 3401, 200)
        ]
        ripple[f"{a}->{b}"] = max(abs(g) for g in gains)
    return {
        "delay_ms": delay,
        "alias_rejection_db": alias,
        "image_rejection_db": image,
        "passband_dev_db": ripple,
    }


def quality_section() -> dict[str, Any]:
    try:
        import scipy  # noqa: F401  (bench extra)
    except ImportError:
        return {"available": False, "reason": "scipy not installed (pip install voicebridge-bench)"}
    out: dict[str, Any] = {"available": True}
    ours = _resampler_metrics(make_resampler)
    ours["design_delay_ms"] = {
        k: make_resampler(*map(int, k.split("->"))).delay_s * 1000 for k in ours["delay_ms"]
    }
    out["voicebridge"] = ours
    out["naive_audioop"] = _resampler_metrics(paths.RateCv) if paths.NAIVE_AVAILABLE else None
    return out


def pesq_section(speech_22k: np.ndarray | None) -> dict[str, Any]:
    try:
        import scipy.signal  # noqa: F401
        from pesq import pesq  # bench extra
    except ImportError:
        return {
            "available": False,
            "reason": "pesq/scipy not installed (pip install voicebridge-bench)",
        }
    if speech_22k is None:
        return {"available": False, "reason": "espeak-ng not found"}
    reference = sig.to_rate(speech_22k, PHONE)
    out: dict[str, Any] = {"available": True, "speech_seconds": len(speech_22k) / 22050}

    def score(ulaw: bytes) -> float:
        deg = sig.arr(ulaw_decode(ulaw))[: len(reference)]
        return float(pesq(PHONE, reference[: len(deg)] / 32768, deg / 32768, "nb"))

    for rate in (16000, 24000):
        fmt = Format("pcm_s16le", rate)
        agent = sig.to_rate(speech_22k, rate)
        from scipy.signal import resample_poly

        ideal = ulaw_encode(sig.pcm(resample_poly(agent, 1, rate // PHONE, window=("kaiser", 14.0))))
        conv = AgentAudioConverter(fmt)
        ours = b"".join(
            conv.convert(c) for c in sig.chunks(sig.pcm(agent), round(fmt.bytes_per_second * FRAME_S))
        )
        row = {"ideal": score(ideal), "voicebridge": score(ours), "naive_audioop": None}
        if paths.NAIVE_AVAILABLE:
            step = paths.outbound_naive(fmt)
            row["naive_audioop"] = score(
                b"".join(step(c) for c in sig.chunks(sig.pcm(agent), round(fmt.bytes_per_second * FRAME_S)))
            )
        out[fmt.name] = row
    return out


def _targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, op: str) -> None:
        value = None if value is None else float(value)
        ok = None if value is None else bool(value <= limit if op == "<=" else value >= limit)
        rows.append({"target": name, "value": value, "limit": f"{op} {limit:g}", "pass": ok})

    cpu = report["cpu_us_per_call_second"]["voicebridge"]
    add("CPU in+out per call-second, pcm_16000 (µs)", cpu["pcm_16000"]["total"], TARGETS["cpu_16k_us"], "<=")
    add("CPU in+out per call-second, ulaw_8000 (µs)", cpu["ulaw_8000"]["total"], TARGETS["cpu_ulaw_us"], "<=")
    pq = report["pesq_nb"]
    for name in ("pcm_16000", "pcm_24000"):
        gap = pq[name]["ideal"] - pq[name]["voicebridge"] if pq.get("available") else None
        add(f"PESQ-NB shortfall vs ideal, {name}", gap, TARGETS["pesq_gap"], "<=")
    q = report["resampler"]
    if q.get("available"):
        ours = q["voicebridge"]
        for k, v in ours["alias_rejection_db"].items():
            add(f"alias rejection 5 kHz {k} (dB)", v, TARGETS["alias_db"], ">=")
        for k, v in ours["image_rejection_db"].items():
            add(f"image rejection 1 kHz {k} (dB)", v, TARGETS["image_db"], ">=")
        for k, v in ours["passband_dev_db"].items():
            add(f"passband deviation ≤3.4 kHz {k} (dB)", v, TARGETS["ripple_db"], "<=")
        for k, v in ours["delay_ms"].items():
            rate = max(int(r) for r in k.split("->"))
            add(f"delay {k} measured (ms)", v, 10.0 if rate in (22050, 44100) else 2.0, "<=")
    return rows


def collect(seconds: float = 20.0, repeats: int = 5) -> dict[str, Any]:
    """Run every section and return the report as one JSON-ready dict."""
    speech = sig.speech_22k()
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "audioop_available": paths.NAIVE_AVAILABLE,
        "cpu_us_per_call_second": cpu_section(seconds, repeats, speech),
        "resampler": quality_section(),
        "pesq_nb": pesq_section(speech),
    }
    report["targets"] = _targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicebridge-media-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--seconds", type=float, default=20.0, help="call-seconds of audio per CPU run")
    parser.add_argument("--repeats", type=int, default=5, help="CPU runs per format (median reported)")
    args = parser.parse_args(argv)
    report = collect(seconds=args.seconds, repeats=max(1, args.repeats))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
