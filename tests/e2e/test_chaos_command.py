"""voicebridge-chaos over real processes, its cheapest runs: an agent replica, then a media replica,
SIGKILLed under 2 calls.

The command's figures are not asserted against targets here (they are timings: docs/failover.md has
them); what is asserted is what the command must get right whatever the machine's speed: the calls
went on, every conversation that continued a call was told the call so far, nothing was heard twice,
and every service's calls and sessions are back to zero afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebridge.sim.chaos import parse_args, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_the_chaos_command_kills_an_agent_and_reports_the_calls_going_on(tmp_path: Path) -> None:
    small = ["--edges", "1", "--media", "1", "--agents", "2", "--call-seconds", "6"]
    args = parse_args(["--kill", "agent", "--calls", "2", *small])
    out = await run(args, tmp_path)

    agent = out["kinds"]["agent"]
    assert agent["killed"] in {"agent-1", "agent-2"}
    assert agent["calls_dropped"] == 0, agent["drop_reasons"]
    assert agent["calls_resumed"] >= 1  # the killed replica carried a call, which went on elsewhere
    assert agent["context_arrived"] == f"{agent['calls_resumed']}/{agent['calls_resumed']}"
    assert agent["second_greetings"] == 0
    assert agent["repeated_ms"] == 0.0
    assert all(v == 0 for v in out["leaks"]["active_at_the_end"].values())
    assert out["leaks"]["emulator_conversations_open"] == 0


async def test_the_chaos_command_kills_a_media_replica_and_its_calls_go_on_in_their_conversations(
    tmp_path: Path,
) -> None:
    small = ["--edges", "1", "--media", "2", "--agents", "1", "--call-seconds", "6"]
    out = await run(parse_args(["--kill", "media", "--calls", "2", *small]), tmp_path)

    media = out["kinds"]["media"]
    assert media["killed"] in {"media-1", "media-2"}
    assert media["calls_dropped"] == 0, media["drop_reasons"]
    assert media["calls_reattached"] >= 1  # the killed replica carried a call, opened again elsewhere
    assert media["agent_conversations"] == 2  # one each: the conversations went on, none replaced
    assert media["second_greetings"] == 0
    assert (media["repeated_ms"], media["skipped_ms"]) == (0.0, 0.0)  # to the byte (stamped audio)
    assert all(v == 0 for v in out["leaks"]["active_at_the_end"].values())
    assert not any(out["leaks"]["tasks_over_idle"].values())
    assert out["leaks"]["emulator_conversations_open"] == 0
