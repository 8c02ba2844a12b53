"""voicebridge-rolling's own arithmetic (sim/rolling.py): where gaps are, and its SLO checks.

The run itself starts real processes for minutes: it is a documented command, not a test
(docs/operations.md); the replicas it relies on are tested in tests/e2e/test_replicas.py."""

from __future__ import annotations

import pytest

from voicebridge.sim.loadgen import gaps
from voicebridge.sim.rolling import gap_times, parse_args, slo


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([], []),
        ([(0, 1600), (1600, 3200)], []),  # continuous
        ([(0, 1600), (1760, 3200)], []),  # 20 ms hole: frames 40 ms apart, not over
        ([(0, 1600), (1768, 3200)], [0.2]),  # 21 ms hole: over 40 ms apart
        ([(0, 1600), (1600 + 4000, 8000)], []),  # 0.5 s: a new utterance, not a gap
    ],
)
def test_gap_times_are_where_loadgen_counts_gaps(spans, expected) -> None:
    assert gap_times(spans) == expected
    assert gaps(spans)[0] == len(expected)


def _out(dropped: int = 0, over_40ms: int = 0, lost=(0.0, 0.0), codes=(0, 0)) -> dict:
    return {
        "calls_dropped": dropped,
        "playback_gaps": {"over_40ms": over_40ms},
        "lost_frames": {"caller_to_elevenlabs": lost[0], "elevenlabs_to_caller": lost[1]},
        "restarts": [{"exit_code": c} for c in codes],
    }


def test_slo_flags_bound_drops_gaps_and_losses_and_every_drain_must_exit_zero() -> None:
    args = parse_args(["--slo-dropped", "0", "--slo-gaps", "0", "--slo-lost", "0"])
    assert slo(_out(), args)["pass"]
    assert not slo(_out(dropped=1), args)["pass"]
    assert not slo(_out(over_40ms=1), args)["pass"]
    assert not slo(_out(lost=(0.0, 2.0)), args)["pass"]
    assert not slo(_out(lost=(None, None)), args)["pass"]  # no emulator figures: not proven
    assert not slo(_out(codes=(0, None)), args)["pass"]  # a replica that had to be killed
    assert slo(_out(dropped=3), parse_args([]))["pass"] is True  # no flag, no bound


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--media", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--rate", "0"])
