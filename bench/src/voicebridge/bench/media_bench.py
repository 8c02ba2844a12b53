"""Media DSP benchmark: CPU per call-second, resampler quality, and PESQ-NB, against the naive audioop path.

Run `voicebridge-media-bench` (or `python -m voicebridge.bench.media_bench`); `--json` prints one JSON object.
It is a report, not a test: the exit code is 0 whatever the numbers. scipy and pesq (the `bench` extra) are
needed for the quality and PESQ sections and espeak-ng for speech; missing pieces are reported as unavailable.

CPU is `time.process_time` over a stream of 20 ms frames, 50 in + 50 out per call-second, the median of
several runs. Inbound = μ-law decode (once, shared) + WebRtcVad (10 ms frames) + CallerAudioConverter;
outbound = AgentAudioConverter. The naive path is `audioop.ulaw2lin`/`ratecv`/`lin2ulaw` with the same VAD.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from voicebridge.media.audio.convert import (
    SUPPORTED_FORMATS,
    AgentAudioConverter,
    CallerAudioConverter,
    Format,
    decode_for_analysis,
)
from voicebridge.media.audio.g711 import ulaw_decode, ulaw_encode
from voicebridge.media.audio.resample import make_resampler
from voicebridge.media.audio.vad import WebRtcVad

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13+ without audioop-lts
        audioop = None  # type: ignore[assignment]

__all__ = ["collect", "main", "render"]

PHONE = 8000
AGENT_RATES = (16000, 22050, 24000, 44100, 48000)
FRAME_S = 0.02
SENTENCES = (
    "Hello, thanks for calling. How can I help you today?",
    "I would like to check the balance on my account, please.",
    "Sure. Can you confirm the last four digits of your card number?",
)
TARGETS = {
    "cpu_16k_us": 1000.0,
    "cpu_ulaw_us": 200.0,
    "pesq_gap": 0.05,
    "alias_db": 70.0,
    "image_db": 70.0,
    "ripple_db": 0.1,
}


# --- signals and measures -----------------------------------------------------------------------------


def _tone(freq: float, rate: int, seconds: float, amp: float = 16000.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def _pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def _arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2").astype(np.float64)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _stream(process: Callable[[bytes], bytes], x: np.ndarray, rate: int) -> np.ndarray:
    """Feed `x` in 20 ms chunks, as a call does."""
    return _arr(b"".join(process(c) for c in _chunks(_pcm(x), 2 * round(rate * FRAME_S))))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _steady(x: np.ndarray, rate: int) -> np.ndarray:
    n = round(0.1 * rate)
    return x[n : len(x) - n]


def _sine_amp(x: np.ndarray, freq: float, rate: int) -> float:
    t = np.arange(len(x)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(coef[0], coef[1]))


def _energy_above_db(x: np.ndarray, rate: int, above_hz: float) -> float:
    """Energy above `above_hz` relative to the total, dB; Blackman-Harris window (−92 dB sidelobes)."""
    k = np.arange(len(x))
    coefs = (0.35875, 0.48829, 0.14128, 0.01168)
    w = sum((-1) ** i * c * np.cos(2 * np.pi * i * k / len(x)) for i, c in enumerate(coefs))
    spec = np.abs(np.fft.rfft(x * w)) ** 2
    high = spec[np.fft.rfftfreq(len(x), 1 / rate) > above_hz].sum()
    return float(10 * np.log10(max(high, 1e-30) / spec.sum()))


def _xcorr_lag(reference: np.ndarray, delayed: np.ndarray) -> float:
    """Lag (samples, sub-sample by parabolic interpolation) by which `delayed` trails `reference`."""
    size = 1 << (len(reference) + len(delayed) - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(delayed, size) * np.conj(np.fft.rfft(reference, size)), size)
    i = int(np.argmax(c))
    a, b, d = c[i - 1], c[i], c[(i + 1) % size]
    frac = 0.5 * (a - d) / (a - 2 * b + d) if (a - 2 * b + d) != 0 else 0.0
    lag = i + frac
    return lag if lag < size / 2 else lag - size


# --- the naive (audioop) path -------------------------------------------------------------------------


class _RateCv:
    """audioop.ratecv with its state kept between chunks: the 'naive' resampler."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self.state: tuple[int, tuple[tuple[int, int], ...]] | None = None

    def process(self, pcm: bytes) -> bytes:
        out, self.state = audioop.ratecv(pcm, 2, 1, self.in_rate, self.out_rate, self.state)
        return out


def _inbound_ours(fmt: Format) -> Callable[[bytes, int], None]:
    vad, conv = WebRtcVad(), CallerAudioConverter(fmt)
    passthrough = fmt.encoding == "mulaw"

    def step(frame: bytes, ts: int) -> None:
        pcm = decode_for_analysis(frame)
        vad.feed(pcm, ts)
        if passthrough:
            conv.convert(frame)
        else:
            conv.convert_decoded(pcm)

    return step


def _outbound_ours(fmt: Format) -> Callable[[bytes], bytes]:
    return AgentAudioConverter(fmt).convert


def _inbound_naive(fmt: Format) -> Callable[[bytes, int], None]:
    vad = WebRtcVad()
    rc = _RateCv(PHONE, fmt.rate) if fmt.encoding != "mulaw" and fmt.rate != PHONE else None

    def step(frame: bytes, ts: int) -> None:
        pcm = audioop.ulaw2lin(frame, 2)
        vad.feed(pcm, ts)
        if rc is not None:
            rc.process(pcm)

    return step


def _outbound_naive(fmt: Format) -> Callable[[bytes], bytes]:
    if fmt.encoding == "mulaw":
        return lambda data: data
    rc = _RateCv(fmt.rate, PHONE) if fmt.rate != PHONE else None

    def step(data: bytes) -> bytes:
        return audioop.lin2ulaw(rc.process(data) if rc else data, 2)

    return step


# --- speech -------------------------------------------------------------------------------------------


def _espeak(text: str) -> np.ndarray | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True)  # noqa: S603
        with wave.open(str(path), "rb") as w:
            if w.getframerate() != 22050 or w.getsampwidth() != 2:
                return None
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def _speech_22k() -> np.ndarray | None:
    parts = [_espeak(s) for s in SENTENCES]
    if any(p is None for p in parts):
        return None
    gap = np.zeros(11025)
    return np.concatenate([x for p in parts for x in (p, gap)])


def _to_rate(x22k: np.ndarray, rate: int) -> np.ndarray:
    """Offline high-quality resampling (scipy, long Kaiser filter), for reference signals only."""
    from scipy.signal import resample_poly  # bench extra

    g = math.gcd(rate, 22050)
    return resample_poly(x22k, rate // g, 22050 // g, window=("kaiser", 14.0))


# --- sections -----------------------------------------------------------------------------------------


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
        src22 = _tone(440, 22050, seconds + 1) * (1 + np.sin(np.arange(round(22050 * (seconds + 1))) / 3000))
    inbound_ulaw = ulaw_encode(_pcm(_quick_resample(src22, PHONE)))
    frames_in = _chunks(inbound_ulaw, 160)[:n]
    impls: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "voicebridge": (_inbound_ours, _outbound_ours)
    }
    if audioop is not None:
        impls["naive_audioop"] = (_inbound_naive, _outbound_naive)
    out: dict[str, Any] = {"seconds": n * FRAME_S, "repeats": repeats}
    for name, (mk_in, mk_out) in impls.items():
        per_fmt: dict[str, Any] = {}
        for fmt in SUPPORTED_FORMATS:
            agent = inbound_ulaw if fmt.encoding == "mulaw" else _pcm(_quick_resample(src22, fmt.rate))
            size = round(fmt.bytes_per_second * FRAME_S)
            frames_out = _chunks(agent, size)[:n]
            runs = [
                _cpu_per_call_second(mk_in(fmt), mk_out(fmt), frames_in, frames_out, n * FRAME_S)
                for _ in range(repeats)
            ]
            inbound = statistics.median(r["inbound"] for r in runs)
            outbound = statistics.median(r["outbound"] for r in runs)
            per_fmt[fmt.name] = {"inbound": inbound, "outbound": outbound, "total": inbound + outbound}
        out[name] = per_fmt
    if audioop is None:
        out["naive_audioop"] = None
    return out


def _quick_resample(x22k: np.ndarray, rate: int) -> np.ndarray:
    """Test-signal resampling that needs no scipy (our own resampler, whole signal at once)."""
    return _arr(make_resampler(22050, rate).process(_pcm(x22k)))


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
            y = _stream(make(a, b).process, x, a)
            # µs precision: the sub-sample peak estimate is not finer than that
            delay[f"{a}->{b}"] = round(_xcorr_lag(ideal[: len(y)], y) / b * 1000, 3)
    alias = {}
    for rate in AGENT_RATES:
        x = _tone(5000, rate, 0.6)
        y = _steady(_stream(make(rate, PHONE).process, x, rate), PHONE)
        alias[f"{rate}->8000"] = 20 * math.log10(_rms(x) / max(_rms(y), 1e-9))
    image = {}
    for rate in (16000, 24000, 48000):
        y = _steady(_stream(make(PHONE, rate).process, _tone(1000, PHONE, 0.6), PHONE), rate)
        image[f"8000->{rate}"] = -_energy_above_db(y, rate, 4000)
    ripple = {}
    for a, b in ((16000, PHONE), (24000, PHONE), (PHONE, 16000), (PHONE, 24000)):
        gains = [
            20
            * math.log10(
                _sine_amp(_steady(_stream(make(a, b).process, _tone(f, a, 0.4), a), b), f, b) / 16000
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
    out["naive_audioop"] = _resampler_metrics(_RateCv) if audioop is not None else None
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
    reference = _to_rate(speech_22k, PHONE)
    out: dict[str, Any] = {"available": True, "speech_seconds": len(speech_22k) / 22050}

    def score(ulaw: bytes) -> float:
        deg = _arr(ulaw_decode(ulaw))[: len(reference)]
        return float(pesq(PHONE, reference[: len(deg)] / 32768, deg / 32768, "nb"))

    for rate in (16000, 24000):
        fmt = Format("pcm_s16le", rate)
        agent = _to_rate(speech_22k, rate)
        from scipy.signal import resample_poly

        ideal = ulaw_encode(_pcm(resample_poly(agent, 1, rate // PHONE, window=("kaiser", 14.0))))
        conv = AgentAudioConverter(fmt)
        ours = b"".join(conv.convert(c) for c in _chunks(_pcm(agent), round(fmt.bytes_per_second * FRAME_S)))
        row = {"ideal": score(ideal), "voicebridge": score(ours), "naive_audioop": None}
        if audioop is not None:
            step = _outbound_naive(fmt)
            row["naive_audioop"] = score(
                b"".join(step(c) for c in _chunks(_pcm(agent), round(fmt.bytes_per_second * FRAME_S)))
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
    speech = _speech_22k()
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "audioop_available": audioop is not None,
        "cpu_us_per_call_second": cpu_section(seconds, repeats, speech),
        "resampler": quality_section(),
        "pesq_nb": pesq_section(speech),
    }
    report["targets"] = _targets(report)
    return report


# --- output -------------------------------------------------------------------------------------------


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render(report: dict[str, Any]) -> str:
    """The human-readable report."""
    out = [
        f"voicebridge media bench — Python {report['python']}, numpy {report['numpy']}, "
        f"audioop {'available' if report['audioop_available'] else 'unavailable'}"
    ]
    cpu = report["cpu_us_per_call_second"]
    naive = cpu.get("naive_audioop") or {}
    out += [
        "",
        f"CPU µs per call-second (50 in + 50 out 20 ms frames, {cpu['seconds']:g} s, "
        f"median of {cpu['repeats']}); naive = audioop",
    ]
    rows = []
    for name, v in cpu["voicebridge"].items():
        n = naive.get(name, {})
        rows.append(
            [
                name,
                _f(v["inbound"]),
                _f(v["outbound"]),
                _f(v["total"]),
                _f(n.get("inbound")),
                _f(n.get("outbound")),
                _f(n.get("total")),
            ]
        )
    out += _table(["agent format", "in", "out", "total", "naive in", "naive out", "naive total"], rows)
    q = report["resampler"]
    out.append("")
    if not q.get("available"):
        out.append(f"resampler quality: unavailable ({q.get('reason')})")
    else:
        ours, nq = q["voicebridge"], q.get("naive_audioop") or {}
        out.append("resampler quality (20 ms chunks); naive = audioop.ratecv")
        rows = [
            [
                f"delay {k} ms",
                _f(ours["design_delay_ms"][k], "{:.3f}"),
                _f(v, "{:.3f}"),
                _f(nq.get("delay_ms", {}).get(k), "{:.3f}"),
            ]
            for k, v in ours["delay_ms"].items()
        ]
        rows += [
            [f"alias rejection 5 kHz {k} dB", "", _f(v), _f(nq.get("alias_rejection_db", {}).get(k))]
            for k, v in ours["alias_rejection_db"].items()
        ]
        rows += [
            [f"image rejection 1 kHz {k} dB", "", _f(v), _f(nq.get("image_rejection_db", {}).get(k))]
            for k, v in ours["image_rejection_db"].items()
        ]
        rows += [
            [
                f"passband max |dev| ≤3.4k {k} dB",
                "",
                _f(v, "{:.4f}"),
                _f(nq.get("passband_dev_db", {}).get(k), "{:.4f}"),
            ]
            for k, v in ours["passband_dev_db"].items()
        ]
        out += _table(["measure", "design", "voicebridge", "naive"], rows)
    pq = report["pesq_nb"]
    out.append("")
    if not pq.get("available"):
        out.append(f"PESQ-NB: unavailable ({pq.get('reason')})")
    else:
        out.append(
            f"PESQ-NB, agent → caller (μ-law 8k), espeak-ng speech {pq['speech_seconds']:.1f} s, "
            "ref = clean 8 kHz"
        )
        rows = [
            [
                k,
                _f(pq[k]["ideal"], "{:.3f}"),
                _f(pq[k]["voicebridge"], "{:.3f}"),
                _f(pq[k]["naive_audioop"], "{:.3f}"),
            ]
            for k in ("pcm_16000", "pcm_24000")
        ]
        out += _table(["agent format", "ideal", "voicebridge", "naive"], rows)
    out += ["", "targets"]
    rows = [
        [
            t["target"],
            _f(t["value"], "{:.3f}"),
            t["limit"],
            {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]],
        ]
        for t in report["targets"]
    ]
    out += _table(["target", "value", "limit", "result"], rows)
    return "\n".join(out)


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
