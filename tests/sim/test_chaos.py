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
from voicebridge.sim.chaos_report import reply_stall_s


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


def test_repeats_are_bytes_heard_twice_and_skips_bytes_sent_but_never_received() -> None:
    once = GREETING + ANSWERS[0] + ANSWERS[1]
    sent = {"greeting": len(GREETING), "answer-0": len(ANSWERS[0]), "answer-1": len(ANSWERS[1])}
    clean = repeated_and_skipped_ms(once, sent)
    assert clean == {"greetings_heard": 1, "repeated_ms": 0.0, "skipped_ms": 0.0}
    twice = repeated_and_skipped_ms(once + GREETING + ANSWERS[1], sent)
    assert twice["greetings_heard"] == 2
    assert twice["repeated_ms"] == (len(GREETING) + len(ANSWERS[1])) / 8
    # A failover that replays 120 ms of an answer, or skips 80 ms of one: no whole copy to count.
    replayed = GREETING + ANSWERS[0][:2000] + ANSWERS[0][1040:]
    assert repeated_and_skipped_ms(replayed, {"answer-0": len(ANSWERS[0])})["repeated_ms"] == 120.0
    skipped = GREETING + ANSWERS[0][:2000] + ANSWERS[0][2640:]
    assert repeated_and_skipped_ms(skipped, {"answer-0": len(ANSWERS[0])})["skipped_ms"] == 80.0
    short = repeated_and_skipped_ms(GREETING, {"greeting": len(GREETING), "answer-0": 800})
    assert short["skipped_ms"] == 100.0


def test_a_pause_inside_a_reply_after_the_failure_is_a_stall() -> None:
    pause = b"\xff" * 2400  # 300 ms of nothing playing, mid-answer
    timeline = b"\xff" * 8000 + ANSWERS[0][:1600] + pause + ANSWERS[0][1600:]
    # The failure at 1.1 s (the answer began at 1.0 s on a playout connected at t=100)
    assert reply_stall_s(timeline, 100.0, 101.1) == pytest.approx(0.3)
    assert reply_stall_s(timeline, 100.0, 102.0) == 0.0  # the pause began long before this failure


def _agent(conversations: int, dropped_at: float | None = None, ok: bool = True) -> dict:
    return {
        "conversations": conversations,
        "sent_bytes": len(GREETING) * conversations,
        "sent_by_reply": {"greeting": len(GREETING)},
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


def test_a_media_kill_counts_every_call_and_the_pause_it_left_inside_a_reply() -> None:
    pause = b"\xff" * 2400
    hit_timeline = b"\xff" * 8000 + ANSWERS[0][:1600] + pause + ANSWERS[0][1600:]
    spared_timeline = b"\xff" * 8000 + ANSWERS[0]
    turns: list[tuple[float, float | None]] = [(100.5, 101.0)]  # answered before the failure
    hit = ChaosCall("a", turns=turns, received=ANSWERS[0], timeline=hit_timeline, connected_at=100.0)
    spared = ChaosCall("b", turns=turns, received=ANSWERS[0], timeline=spared_timeline, connected_at=100.0)
    for call in (hit, spared):
        call.closed_by = "caller"
    one = {"conversations": 1, "sent_by_reply": {"answer-0": len(ANSWERS[0])}}
    phase = {"kind": "media", "killed_at": 101.1, "reattached": 1, "reattach_s_mean": 0.004}
    figures = kind_report(phase, [hit, spared], {"a": one, "b": one})
    assert figures["calls_dropped"] == 0
    assert figures["calls_resumed"] == 0  # the agent conversations lived on
    assert figures["agent_conversations"] == 2
    assert figures["calls_reattached"] == 1
    assert figures["reattach_switch_ms_mean"] == 4.0
    assert figures["heard_gap_ms"] == {"p50": 0.0, "p95": 300.0, "max": 300.0}
    assert (figures["repeated_ms"], figures["skipped_ms"]) == (0.0, 0.0)


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
    out["leaks"]["tasks_over_idle"] = {"media-1": 3.0}  # tasks left behind by the calls
    assert not slo(out, args)["checks"]["no_leaks"]
    out["leaks"]["tasks_over_idle"] = {"media-1": 0.0}
    out["leaks"]["active_at_the_end"]["media-2"] = 1.0
    assert not slo(out, args)["checks"]["no_leaks"]


def test_kill_kinds_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--kill", "agent,database"])
    assert parse_args(["--kill", "", "--elevenlabs-error-close"]).kill == []
