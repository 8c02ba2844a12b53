"""voicebridge-chaos's own arithmetic (sim/chaos.py): gaps, repeats and skips, a kind's figures, SLOs.

No processes: the run kills real replicas for a minute or more, so it is a documented command
(docs/failover.md); the recoveries it measures are tested over real processes in tests/e2e."""

from __future__ import annotations

from typing import Any

import pytest

from voicebridge.sim.chaos import (
    ANSWERS,
    EL_CLOSE,
    GREETING,
    ChaosCall,
    heard_gap_s,
    kind_report,
    parse_args,
    percentile,
    repeated_and_skipped_ms,
    slo,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, None), ([3.0], 95, 3.0), ([4.0, 1.0, 3.0, 2.0], 50, 2.0), ([*range(1, 21)], 95, 19)],
)
def test_percentile_is_nearest_rank(values, q, expected) -> None:
    assert percentile(values, q) == expected


def test_the_gap_is_the_hit_turns_wait_beyond_the_calls_usual_wait() -> None:
    # Waits of 1.0 s before the failure at t=10; the hit turn's words ended at 9.5, answered at 12.0.
    turns: list[tuple[float, float | None]] = [(1.0, 2.0), (4.0, 5.0), (9.5, 12.0), (14.0, 15.0)]
    assert heard_gap_s(turns, 10.0) == pytest.approx(1.5)


def test_words_lost_at_the_failure_count_from_their_end_to_the_next_answer() -> None:
    # Spoken at 9.5, never answered; spoken again at 13.0, answered at 14.0: 4.5 s of waiting, 1 usual.
    assert heard_gap_s([(1.0, 2.0), (9.5, None), (13.0, 14.0)], 10.0) == pytest.approx(3.5)


def test_a_failure_between_turns_costs_no_gap_and_never_answered_again_is_none() -> None:
    assert heard_gap_s([(1.0, 2.0), (11.0, 11.5)], 10.0) == 0.0  # quicker than usual: not negative
    assert heard_gap_s([(1.0, 2.0), (9.5, None)], 10.0) is None


def test_repeats_are_audio_heard_twice_and_skips_audio_sent_but_never_received() -> None:
    once = GREETING + ANSWERS[0] + ANSWERS[1]
    sent = len(once) + len(GREETING)  # and a continuing conversation's greeting, held back
    clean = repeated_and_skipped_ms(once, sent, len(GREETING), GREETING, ANSWERS)
    assert clean == {"greetings_heard": 1, "repeated_ms": 0.0, "skipped_ms": 0.0}
    twice = repeated_and_skipped_ms(once + GREETING + ANSWERS[1], sent, 0, GREETING, ANSWERS)
    assert twice["greetings_heard"] == 2
    assert twice["repeated_ms"] == (len(GREETING) + len(ANSWERS[1])) / 8
    short = repeated_and_skipped_ms(GREETING, len(GREETING) + 800, 0, GREETING, ANSWERS)
    assert short["skipped_ms"] == 100.0


def _agent(conversations: int, dropped_at: float | None = None, ok: bool = True) -> dict:
    return {
        "conversations": conversations,
        "sent_bytes": len(GREETING) * conversations,
        "withheld_bytes": len(GREETING) * (conversations - 1),
        "dropped_at": dropped_at,
        "resumed_at": [dropped_at + 0.25] if dropped_at is not None and conversations > 1 else [],
        "context_ok": [ok] * (conversations - 1),
    }


def test_a_kinds_figures_count_only_the_calls_the_failure_hit() -> None:
    hit = ChaosCall("a", turns=[(1.0, 2.0), (9.5, 12.0)], received=GREETING, closed_by="caller")
    spared = ChaosCall("b", turns=[(1.0, 2.0), (9.8, 10.8)], received=GREETING, closed_by="caller")
    lost = ChaosCall("c", turns=[(1.0, 2.0)], received=GREETING, closed_by="server")
    agents = {"a": _agent(2, 10.0), "b": _agent(1, None), "c": _agent(1, 10.0)}
    figures = kind_report({"kind": EL_CLOSE}, [hit, spared, lost], agents)
    assert figures["calls_dropped"] == 1
    assert figures["drop_reasons"] == ["closed by server"]
    assert figures["calls_resumed"] == 1
    assert figures["context_arrived"] == "1/1"
    assert figures["heard_gap_ms"] == {"p50": 1500.0, "p95": 1500.0, "max": 1500.0}
    assert figures["time_to_recover_ms"]["max"] == 250.0
    assert figures["second_greetings"] == 0
    assert figures["repeated_ms"] == 0.0


def test_an_edge_kill_hits_the_calls_whose_stream_reopened_in_the_same_conversation() -> None:
    moved = ChaosCall("a", turns=[(1.0, 2.0), (9.5, 12.0)], received=GREETING, closed_by="caller", streams=2)
    stayed = ChaosCall("b", turns=[(1.0, 2.0), (9.8, 10.8)], received=GREETING, closed_by="caller")
    agents = {"a": _agent(1, None), "b": _agent(1, None)}
    figures = kind_report({"kind": "edge", "killed_at": 10.0}, [moved, stayed], agents)
    assert (figures["calls_reopened"], figures["calls_resumed"], figures["calls_dropped"]) == (1, 0, 0)
    assert figures["heard_gap_ms"] == {"p50": 1500.0, "p95": 1500.0, "max": 1500.0}  # the moved call only


def test_the_slo_checks_each_kind_and_the_leaks() -> None:
    args = parse_args(["--slo-dropped", "0", "--slo-gap-p95-ms", "2000", "--slo-repeated-ms", "0"])
    kind = {"calls_dropped": 0, "heard_gap_ms": {"p95": 1800.0}, "repeated_ms": 0.0}
    out: dict[str, Any] = {
        "kinds": {"agent": kind, "media": {**kind, "calls_dropped": 2}},
        "leaks": {"active_at_the_end": {"edge-1": 0.0}, "emulator_conversations_open": 0},
    }
    result = slo(out, args)
    assert result["checks"]["agent.dropped"]
    assert not result["checks"]["media.dropped"]
    assert result["checks"]["no_leaks"]
    assert not result["pass"]
    out["leaks"]["active_at_the_end"]["media-2"] = 1.0
    assert not slo(out, args)["checks"]["no_leaks"]


def test_kill_kinds_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--kill", "agent,database"])
    assert parse_args(["--kill", "", "--elevenlabs-error-close"]).kill == []
