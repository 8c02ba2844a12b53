"""voicebridge-chaos's report: what the callers heard, per failure kind, as pure arithmetic.

The run (chaos.py) collects, per call, the turns' timings and the bytes heard, and per call agent what
the emulator sent and the context each continuing conversation got; this module turns them into the
figures and checks the SLOs, so the arithmetic is table-tested without processes (tests/sim/test_chaos.py).

The agent's audio is stamped (stamped_audio.py): every byte of a greeting or an answer can be found in
what the caller received, so "heard twice" and "skipped" are counted per byte, not per whole reply, and
a pause inside a reply (the gap a media replica's death leaves mid-sentence) is measured on the
caller's playout.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from dataclasses import dataclass, field
from typing import Any

from voicebridge.sim.loadgen import RATE, gaps
from voicebridge.sim.stamped_audio import Replies, stamped

FMT = "ulaw_8000"
GREETING = stamped(0, 4000)  # 500 ms
ANSWERS = [stamped(1 + k, 3200) for k in range(40)]  # turn k's answer: 400 ms of its own
EL_CLOSE = "elevenlabs-error-close"
# A pause inside a reply counts towards the heard gap when it begins this soon before the failure (the
# caller's playout clock and the run's differ by the moment of connecting) or any time after it.
STALL_SLACK_S = 0.1


def reply_name(turn: int | None) -> str:
    """The emulator's name for a reply: the greeting (None) or turn k's answer."""
    return "greeting" if turn is None else f"answer-{turn % len(ANSWERS)}"


@functools.cache
def replies() -> Replies:
    return Replies({reply_name(None): GREETING} | {reply_name(k): a for k, a in enumerate(ANSWERS)})


@dataclass
class ChaosCall:
    agent_id: str
    turns: list[tuple[float, float | None]] = field(default_factory=list)  # (words ended, answer heard)
    received: bytes = b""  # agent audio in the order it arrived
    timeline: bytes = b""  # the caller's playout from connecting: agent audio as played, 0xFF elsewhere
    connected_at: float = 0.0  # monotonic time of the playout's sample 0 (about)
    heard_spans: list[tuple[int, int]] = field(default_factory=list)
    closed_by: str | None = None
    error: str | None = None
    streams: int = 1  # Twilio streams the call had: more than one when its edge died (<Connect action>)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100)
    return ordered[int(rank) - 1]


def heard_gap_s(turns: list[tuple[float, float | None]], failed_at: float) -> float | None:
    """How much longer than usual the caller waited for the agent in the turn the failure hit: (first
    answer heard after `failed_at` − the end of the caller's words of the first turn not answered before
    it) − the median wait of the turns answered before it. None: never answered again."""
    before = [heard - spoke for spoke, heard in turns if heard is not None and heard <= failed_at]
    hit = [(spoke, heard) for spoke, heard in turns if heard is None or heard > failed_at]
    after = [heard for _, heard in hit if heard is not None]
    if not hit or not after:
        return None
    usual = statistics.median(before) if before else 0.0
    return max(0.0, after[0] - hit[0][0] - usual)


def repeated_and_skipped_ms(received: bytes, sent_by_reply: dict[str, int]) -> dict[str, float]:
    """Agent audio heard twice (any byte of a greeting or an answer received more than once: a second
    greeting, a replayed stretch) and agent audio the emulator sent that never arrived, in ms of 8 kHz
    μ-law. `sent_by_reply`: bytes the emulator sent of each reply (a continuing conversation's greeting,
    which the bridge holds back on purpose, left out)."""
    heard = replies().align(received)
    skipped = sum(max(0, sent - heard.distinct_bytes(name)) for name, sent in sent_by_reply.items())
    return {
        "greetings_heard": heard.times_heard(reply_name(None)),
        "repeated_ms": heard.repeated_bytes() * 1000 / RATE,
        "skipped_ms": skipped * 1000 / RATE,
    }


def reply_stall_s(timeline: bytes, connected_at: float, failed_at: float) -> float:
    """The longest pause inside a reply on the caller's playout that began at or after the failure: the
    heard gap of a failure that landed while the agent was speaking (0.0: none)."""
    since = max(0, round((failed_at - connected_at - STALL_SLACK_S) * RATE))
    return max((n / RATE for at, n in replies().align(timeline).stalls() if at >= since), default=0.0)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _dist_ms(values_s: list[float]) -> dict[str, float | None]:
    return {
        "p50": _ms(percentile(values_s, 50)),
        "p95": _ms(percentile(values_s, 95)),
        "max": _ms(max(values_s, default=None)),
    }


@dataclass(frozen=True)
class FailureKind:
    """One kind of failure a phase injects, and which of its calls the figures count as hit."""

    name: str
    # The service one replica of which is SIGKILLed mid-call; None: nothing is killed (the emulator
    # closes each call's first conversation instead).
    kills: str | None
    # "new_conversation": the calls whose agent conversation was replaced (the emulator saw a
    # continuation); "new_stream": those, and the calls whose Twilio stream was re-opened (their edge
    # died: <Connect action>); "every_call": every call of the phase, where nothing outside the bridge
    # tells the hit calls from the others (a media replica's death leaves the agent conversation whole;
    # the spared calls add gaps of ~0).
    hit: str


KINDS = {
    kind.name: kind
    for kind in (
        FailureKind("agent", "agent", "new_conversation"),
        FailureKind("media", "media", "every_call"),
        FailureKind("edge", "edge", "new_stream"),
        FailureKind(EL_CLOSE, None, "new_conversation"),
    )
}


def kind_report(phase: dict[str, Any], calls: list[ChaosCall], agents: dict[str, dict[str, Any]]) -> dict:
    """One failure kind's figures, from its calls and their agents' records."""
    dropped = [c for c in calls if c.error is not None or c.closed_by != "caller"]
    # A killed media or edge can land mid-reply: that shows as a pause inside the reply, not a late answer.
    mid_reply = KINDS[phase["kind"]].hit != "new_conversation"
    gaps_s, recover_s, contexts, audio = [], [], [], []
    for call in calls:
        agent = agents.get(call.agent_id, {})
        failed_at = agent.get("dropped_at") if phase["kind"] == EL_CLOSE else phase.get("killed_at")
        audio.append(repeated_and_skipped_ms(call.received, agent.get("sent_by_reply", {})))
        replaced = agent.get("conversations", 0) >= 2
        hit = {
            "new_conversation": replaced,
            "new_stream": replaced or call.streams > 1,
            "every_call": True,
        }[KINDS[phase["kind"]].hit]
        if failed_at is None or not hit:
            continue  # this call was not hit
        contexts += agent.get("context_ok", [])
        if agent.get("resumed_at"):
            recover_s.append(agent["resumed_at"][0] - failed_at)
        gap = heard_gap_s(call.turns, failed_at)
        if mid_reply:
            gap = max(gap or 0.0, reply_stall_s(call.timeline, call.connected_at, failed_at))
        if call not in dropped and gap is not None:
            gaps_s.append(gap)
    resumed = sum(1 for c in calls if agents.get(c.agent_id, {}).get("conversations", 0) > 1)
    return {
        "killed": phase.get("killed"),
        "replacement_ready_s": phase.get("replacement_ready_s"),
        "calls": len(calls),
        "calls_dropped": len(dropped),
        "drop_reasons": sorted({c.error or f"closed by {c.closed_by}" for c in dropped})[:5],
        "calls_resumed": resumed,
        # Calls the edges opened again on another media replica (edge_media_reattach_total), and the
        # mean of its switch (stream failure seen -> CallStart on the new replica).
        "calls_reattached": phase.get("reattached"),
        "reattach_switch_ms_mean": _ms(phase.get("reattach_s_mean")),
        "agent_conversations": sum(agents.get(c.agent_id, {}).get("conversations", 0) for c in calls),
        "calls_reopened": sum(1 for c in calls if c.streams > 1),  # through the edges' <Connect action>
        "context_arrived": f"{sum(contexts)}/{len(contexts)}",
        "heard_gap_ms": _dist_ms(gaps_s),
        "second_greetings": sum(1 for a in audio if a["greetings_heard"] > 1),
        "repeated_ms": round(sum(a["repeated_ms"] for a in audio), 1),
        "skipped_ms": round(sum(a["skipped_ms"] for a in audio), 1),
        "time_to_recover_ms": _dist_ms(recover_s),
        "playback_gaps_over_40ms": sum(gaps(c.heard_spans)[0] for c in calls),
        # Caller words never answered (in flight at the failure, say): the caller spoke again.
        "unanswered_turns": sum(1 for c in calls for _, heard in c.turns if heard is None),
    }


def slo(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for kind, figures in out["kinds"].items():
        if args.slo_dropped is not None:
            checks[f"{kind}.dropped"] = figures["calls_dropped"] <= args.slo_dropped
        if args.slo_gap_p95_ms is not None:
            p95 = figures["heard_gap_ms"]["p95"]
            checks[f"{kind}.gap_p95"] = p95 is not None and p95 <= args.slo_gap_p95_ms
        if args.slo_repeated_ms is not None:
            checks[f"{kind}.repeated"] = figures["repeated_ms"] <= args.slo_repeated_ms
    leaks = out["leaks"]
    active = leaks["active_at_the_end"].values()
    tasks = leaks.get("tasks_over_idle", {}).values()
    checks["no_leaks"] = (
        all(v == 0 for v in active) and not any(tasks) and leaks["emulator_conversations_open"] == 0
    )
    return {"checks": checks, "pass": all(checks.values())}


def text(out: dict[str, Any]) -> str:
    lines = [
        f"chaos: replicas {out['replicas']}, {out['calls_per_kind']} calls per kind, {out['elapsed_s']} s"
    ]
    for kind, f in out["kinds"].items():
        gap, rec = f["heard_gap_ms"], f["time_to_recover_ms"]
        lines += [
            f"{kind}: killed {f['killed'] or '-'}; dropped {f['calls_dropped']}/{f['calls']}, "
            f"resumed {f['calls_resumed']}, re-opened {f.get('calls_reopened', 0)}, "
            f"context {f['context_arrived']}",
            f"  heard gap ms p50 {gap['p50']} p95 {gap['p95']} max {gap['max']}; "
            f"recover ms p50 {rec['p50']} max {rec['max']}",
            f"  agent conversations {f['agent_conversations']}, reattached by the edges "
            f"{f['calls_reattached']} (switch ms mean {f['reattach_switch_ms_mean']})",
            f"  second greetings {f['second_greetings']}, repeated {f['repeated_ms']} ms, "
            f"skipped {f['skipped_ms']} ms, playback gaps > 40 ms {f['playback_gaps_over_40ms']}, "
            f"unanswered turns {f['unanswered_turns']}",
        ]
        if f["drop_reasons"]:
            lines.append(f"  drops: {f['drop_reasons']}")
    lines.append(f"leaks: {out['leaks']}")
    if "slo" in out:
        lines.append(f"SLO: {'pass' if out['slo']['pass'] else 'FAIL'} {out['slo']['checks']}")
    return "\n".join(lines)
