"""The bench's report as text tables (`--json` prints the same dict as JSON instead)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
