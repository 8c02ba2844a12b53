"""voicebridge-chaos's edge kind over real processes: the edge carrying a call SIGKILLed under 2 calls.

As in test_chaos_command.py, no timing is asserted (the figures are in docs/failover.md#edge-dies):
what is asserted is that the calls on the killed edge came back through Twilio's `<Connect action>` on
the other edge, in the same conversation (no second greeting, nothing heard twice), none was dropped,
and nothing is left open afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebridge.sim.chaos import parse_args, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_the_chaos_command_kills_an_edge_and_its_calls_reopen_on_the_other(tmp_path: Path) -> None:
    small = ["--edges", "2", "--media", "1", "--agents", "1", "--call-seconds", "6"]
    out = await run(parse_args(["--kill", "edge", "--calls", "2", *small]), tmp_path)

    edge = out["kinds"]["edge"]
    assert edge["killed"] in {"edge-1", "edge-2"}
    assert edge["calls_dropped"] == 0, edge["drop_reasons"]
    assert edge["calls_reopened"] >= 1  # the killed edge carried a call (one per edge), which went on
    assert edge["calls_resumed"] == 0  # in the conversation it had: none was replaced
    assert edge["second_greetings"] == 0
    assert edge["repeated_ms"] == 0.0
    assert all(v == 0 for v in out["leaks"]["active_at_the_end"].values())
    assert out["leaks"]["emulator_conversations_open"] == 0
