"""The replica stack (sim/replica_stack.py): its replicas' addresses are never another stack's.

Two stacks on one machine (parallel test runs, a benchmark beside a test) used to give replicas
fixed ports on 127.0.0.11, .12, ...: a killed replica's address was then taken by the other stack's
next replica while the first stack's name still listed it, and the first stack's calls landed on a
stranger (seen as calls that never heard audio, and drained replicas whose log showed no calls).
"""

from __future__ import annotations

from pathlib import Path

from voicebridge.sim.replica_stack import ReplicaStack

PARROT = {"agent": {"AGENT_BACKEND": "parrot"}}


def test_a_killed_replicas_address_is_not_taken_by_another_stacks_next_replica(tmp_path: Path) -> None:
    first, second = ReplicaStack(tmp_path / "a", PARROT), ReplicaStack(tmp_path / "b", PARROT)
    try:
        killed = first.start("agent")
        killed.kill()
        assert killed.wait(30.0) is not None
        assert killed in first.listed["agent"]  # still in the first stack's name
        stranger = second.start("agent")
        assert (stranger.host, stranger.port) != (killed.host, killed.port)
    finally:
        first.stop()
        second.stop()


def test_loopback_hosts_roll_over_to_the_next_block_instead_of_past_255() -> None:
    from itertools import islice

    from voicebridge.sim.replica_stack import loopback_hosts

    hosts = list(islice(loopback_hosts(), 246))
    assert hosts[0] == "127.0.0.11"
    assert hosts[243] == "127.0.0.254"
    assert hosts[244] == "127.0.1.11"
    assert len(set(hosts)) == len(hosts)
