"""Chaos under load: replicas killed with SIGKILL mid-call, and what the callers heard (issue 15).

    voicebridge-chaos --calls 6 --kill agent,media,edge --elevenlabs-error-close --json \\
        --slo-dropped 0 --slo-gap-p95-ms 2000

On the multi-replica loopback stack (replica_stack.py: two edges, two media, two agents with the
`elevenlabs` backend, the ConvAI emulator in a child process), one phase per failure kind, in turn: N
calls spread over the edges, each greeted, then talking (a short utterance, the agent's answer, again)
for `--call-seconds`. Once every call has had an answer, after a random (seeded) delay, one replica of
the kind that carries calls is killed with SIGKILL (chosen at random, seeded), taken out of its name
at once (the endpoints controller's job, instant here), and a replacement started, as the kubelet
would. For
`--elevenlabs-error-close` nothing is killed: each call's first ElevenLabs conversation closes with 1011
at a random (seeded) moment of its own.

Each call has its own agent id in the emulator, whose agent answers turn k with stamped audio of its own
(stamped_audio.py: every byte's reply and offset can be read back from what the caller heard, so a
stretch heard twice or skipped is found to the byte) and records, for every conversation that continues
the call, the context it received and when. Per kind:
- calls dropped: the call ended other than by the caller hanging up (what the callers saw).
- heard gap: in each call that lost a piece and went on, how much longer the caller waited for the agent
  in the turn the failure hit than in that call's turns before it (end of the caller's words → first
  agent audio played, on the caller's playout); for a media replica's death, whose calls' agent
  conversations live on (nothing outside the bridge tells the hit calls from the others), over every
  call of the phase, and the longer of that and the pause inside a reply the failure left; p50/p95/max.
- audio repeated: any byte of the greeting or an answer received more than once (a second greeting, a
  stretch replayed after a failover); skipped: agent audio the emulator sent that the caller never
  received (the greeting of a continuing conversation excepted: the bridge holds it back on purpose).
- context: continuing conversations whose `contextual_update` had every caller transcript and the
  greeting of the call so far.
- time to recover: the failure → the continuing conversation had its context.
- playback gaps over 40 ms inside an utterance (loadgen's count, as voicebridge-rolling prints it).
At the end, a leak check: every replica's calls/sessions gauge, its calls on next-hop replicas and the
agents' held conversations back to zero, its asyncio tasks back to what it had idle before the phases,
and no emulator conversation left open. SLO flags make the exit code 1 when a figure is over its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from voicebridge.sim.chaos_report import (
    ANSWERS,
    EL_CLOSE,
    FMT,
    GREETING,
    KINDS,
    ChaosCall,
    heard_gap_s,
    kind_report,
    percentile,
    repeated_and_skipped_ms,
    reply_name,
    slo,
    text,
)
from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession, Utterances, tone
from voicebridge.sim.loadgen import CALLS_ACTIVE, RATE, EmulatorProcess, scrape, scrape_sum, scrape_value
from voicebridge.sim.replica_stack import Replica, ReplicaStack
from voicebridge.sim.rolling import run_and_report
from voicebridge.sim.twilio_caller import CallerConfig, EdgePool, TwilioCaller

__all__ = [
    "ANSWERS",
    "EL_CLOSE",
    "FMT",
    "GREETING",
    "KINDS",
    "ChaosCall",
    "heard_gap_s",
    "kind_report",
    "main",
    "parse_args",
    "percentile",
    "repeated_and_skipped_ms",
    "slo",
]

GREETING_TEXT = "Hello, this is the order line. How can I help?"
VOICE = tone(FMT, 300, 400, level=0.5)  # the caller: loud enough for the emulator's utterance detection
SERVICES = tuple(k.kills for k in KINDS.values() if k.kills is not None)  # the --kill choices
# The leak check: per service, gauges that must read 0 once every call has ended (absent: not checked,
# a service that has no such thing), and the asyncio tasks that must be back to their idle count.
IDLE_GAUGES = {
    "edge": ("edge_calls_active", "voicebridge_replica_calls_active"),
    "media": ("media_calls_active", "voicebridge_replica_calls_active"),
    "agent": ("agent_sessions_active", "agent_conversations_held"),
}
TASKS = "voicebridge_asyncio_tasks"
REATTACHED = ("edge_media_reattach_total", 'outcome="reattached"')
REATTACH_SECONDS = "edge_media_reattach_seconds"
# The edges' one public URL, the balancer's address (nobody listens there): the callers reach the
# edges through an EdgePool, and a call whose edge is killed follows its <Connect action> to another.
PUBLIC = "http://127.0.0.10:8000"


# --- the agent in the emulator (child process) ----------------------------------------------------


@dataclass
class CallAgent:
    """One call's agent: greets, answers each utterance with that turn's stamped audio; with
    `close_after_s` its first conversation closes 1011 that long after it opened. Shared by every
    conversation of the call."""

    close_after_s: float | None = None
    transcripts: list[str] = field(default_factory=list)  # caller transcripts sent, in order
    conversations: int = 0
    sent_bytes: int = 0  # agent audio actually written to the client
    sent_by_reply: dict[str, int] = field(default_factory=dict)  # of it, per reply (not withheld ones)
    withheld_bytes: int = 0  # greetings of continuing conversations (the bridge must not play them)
    dropped_at: float | None = None  # monotonic (the same clock in every process on Linux)
    resumed_at: list[float] = field(default_factory=list)
    context_ok: list[bool] = field(default_factory=list)

    async def __call__(self, session: EmulatedSession) -> None:
        self.conversations += 1
        resumed = session.context.resumed
        send_event = session.send_event
        saying: list[str | None] = [None]  # the reply being sent; None: one the bridge must withhold

        async def counted(event: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            await send_event(event, *args, **kwargs)
            if event.get("type") == "audio":
                n = len(base64.b64decode(event["audio_event"]["audio_base_64"]))
                self.sent_bytes += n
                if (name := saying[0]) is not None:
                    self.sent_by_reply[name] = self.sent_by_reply.get(name, 0) + n

        session.send_event = counted  # type: ignore[method-assign]
        saying[0] = None if resumed else reply_name(None)
        await self._say(session, GREETING_TEXT, GREETING)
        if resumed:
            self.withheld_bytes += len(GREETING)
            await self._check_context(session)
        answering = asyncio.create_task(self._answer(session, saying))
        if self.close_after_s is None or resumed:
            await answering
            return
        done, _ = await asyncio.wait([answering], timeout=self.close_after_s)
        if done:
            return
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await answering
        self.dropped_at = time.monotonic()
        await session.fail(1011, "unknown_websocket_crash", "Internal server error")

    async def _check_context(self, session: EmulatedSession) -> None:
        try:
            await session.wait_for_message("contextual_update", timeout=15)
        except TimeoutError:
            self.context_ok.append(False)
            return
        self.resumed_at.append(time.monotonic())
        told = "\n".join(session.context.contextual_updates)
        self.context_ok.append(
            f"You: {GREETING_TEXT}" in told and all(f"Caller: {t}" in told for t in self.transcripts)
        )

    async def _say(self, session: EmulatedSession, text: str, audio: bytes) -> None:
        event_id = session.next_event_id()
        await session.send_event(
            {"type": "agent_response", "agent_response_event": {"agent_response": text, "event_id": event_id}}
        )
        await session.send_audio(audio, event_id=event_id)

    async def _answer(self, session: EmulatedSession, saying: list[str | None]) -> None:
        utterances = Utterances(session)
        while True:
            await utterances.next()
            turn = len(self.transcripts)
            text = f"This is turn {turn}."
            await session.send_event(
                {"type": "user_transcript", "user_transcription_event": {"user_transcript": text}}
            )
            self.transcripts.append(text)
            saying[0] = reply_name(turn)
            await self._say(session, f"Answer {turn}.", ANSWERS[turn % len(ANSWERS)])


def _emulator_main(specs: dict[str, float | None], port_out: Any, stop: Any, out: Any) -> None:
    agents = {agent_id: CallAgent(close_after_s=close) for agent_id, close in specs.items()}

    async def run() -> None:
        emulator = ConvAIEmulator(host="127.0.0.1", port=0)
        for agent_id, agent in agents.items():
            emulator.add_agent(agent_id, AgentScript(FMT, FMT, scenario=agent))
        # The default agent: a stream without agent_id (an edge re-open that found no held conversation)
        # greets and answers like any call's agent, so a fresh conversation shows as a second greeting.
        emulator.add_agent("chaos", AgentScript(FMT, FMT, scenario=CallAgent()))
        await emulator.start()
        port_out.put(emulator.base_url)
        await asyncio.to_thread(stop.wait)
        await asyncio.sleep(1.0)  # the last conversations' closes
        left_open = emulator.open_conversations
        await emulator.stop()
        out.put({"left_open": left_open, "agents": {k: asdict(v) for k, v in agents.items()}})

    uvloop.run(run())


class ChaosEmulator(EmulatorProcess):
    """The emulator with one CallAgent per call, in a child process (its CPU is not the services');
    `stop` returns what each call's agent recorded."""

    def __init__(self, specs: dict[str, float | None]) -> None:
        super().__init__()
        ctx = multiprocessing.get_context("spawn")
        self.proc = ctx.Process(
            target=_emulator_main, args=(specs, self._urls, self._stop, self._totals), daemon=True
        )


# --- the callers --------------------------------------------------------------------------------


async def chaos_call(
    pool: EdgePool, agent_id: str, seconds: float, answered: asyncio.Event, reply_timeout_s: float
) -> ChaosCall:
    """Greeted, then: speak, wait for the answer to be heard (or give up after `reply_timeout_s` and
    speak again), until `seconds` are up; then hang up. `answered` is set at the first answer. The
    stream is dialled directly (its agent_id parameter is the call's own), with the `<Connect action>`
    the edges write, so a killed edge's call goes on through it."""
    config = CallerConfig(
        url=PUBLIC.replace("http", "ws", 1) + "/twilio/media",
        call_sid=f"CAchaos{time.monotonic_ns()}",
        custom_parameters={},
        action_url=f"{PUBLIC}/twilio/stream-action",
        edges=pool,
    )
    config.custom_parameters["agent_id"] = agent_id
    caller = TwilioCaller(config)
    out = ChaosCall(agent_id)
    try:
        out.connected_at = time.monotonic()
        await caller.connect()
        await caller.wait_agent_quiet(0.3, timeout=15)  # the greeting
        end = time.monotonic() + seconds
        while time.monotonic() < end and not caller.closed:
            before = caller.samples_heard()
            await caller.speak(VOICE)
            spoke = time.monotonic()
            heard_at: float | None = None
            with contextlib.suppress(TimeoutError):
                await caller.wait_heard(before / RATE + 0.02, timeout=reply_timeout_s)
                heard_at = time.monotonic() if not caller.closed else None
            out.turns.append((spoke, heard_at))
            if heard_at is not None:
                answered.set()
                await caller.wait_agent_quiet(0.4, timeout=30)
    except Exception as exc:  # a failed call is a result, not a crash of the run
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await caller.hangup()
    out.closed_by, out.streams = caller.summary()["closed_by"], len(caller.stream_sids)
    out.received = b"".join(
        base64.b64decode(m["media"]["payload"])
        for _, m in caller.received
        if isinstance(m, dict) and m.get("event") == "media"
    )
    out.heard_spans = caller.heard_spans()
    out.timeline = caller.heard_ulaw
    return out


# --- the run ------------------------------------------------------------------------------------


class Chaos:
    """The stack, the phases, the kills."""

    def __init__(self, stack: ReplicaStack, args: argparse.Namespace, rng: random.Random) -> None:
        self.stack, self.args, self.rng = stack, args, rng
        self.edges: list[Replica] = []
        self.tasks_idle: dict[str, float] = {}  # replica -> asyncio tasks with no call in progress
        self.t0 = time.monotonic()

    def start(self, service: str) -> Replica:
        replica = self.stack.start(service)
        if service == "edge":
            self.edges.append(replica)
        return replica

    async def phase(self, kind: str, agent_ids: list[str]) -> tuple[dict[str, Any], list[ChaosCall]]:
        answered = [asyncio.Event() for _ in agent_ids]
        tasks = []
        for i, (agent_id, event) in enumerate(zip(agent_ids, answered, strict=True)):
            pool = EdgePool(lambda: [e.address for e in self.edges], first=i)
            call = chaos_call(pool, agent_id, self.args.call_seconds, event, self.args.reply_timeout)
            tasks.append(asyncio.create_task(call))
            await asyncio.sleep(0.1)
        info: dict[str, Any] = {"kind": kind}
        replacement = None
        edges = list(self.edges)
        before = await self.reattaches(edges)
        target = KINDS[kind].kills
        if target is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in answered)), 30)
            await asyncio.sleep(self.rng.uniform(0.0, self.args.window))
            victim = self.rng.choice(await self.carrying_calls(target))
            victim.kill()
            info["killed_at"] = time.monotonic()
            info["killed"] = victim.name
            self.stack.unlist(victim)
            if victim in self.edges:
                self.edges.remove(victim)
            replacement = asyncio.create_task(asyncio.to_thread(self.start, target))
        calls = list(await asyncio.gather(*tasks))
        if replacement is not None:
            new = await replacement
            info["replacement_ready_s"] = round(time.monotonic() - info["killed_at"], 2)
            info["replaced_by"] = new.name
        after = await self.reattaches([e for e in edges if e in self.edges])
        if target == "media":  # the edges' own count of calls they opened again elsewhere
            info["reattached"] = int(after[0] - before[0])
            n = after[2] - before[2]
            info["reattach_s_mean"] = (after[1] - before[1]) / n if n else None
        return info, calls

    async def reattaches(self, edges: list[Replica]) -> tuple[float, float, float]:
        """Summed over `edges`: calls re-opened on another media replica, and the switch histogram's
        sum and count."""
        total = [0.0, 0.0, 0.0]
        for edge in edges:
            for i, (name, fragment) in enumerate(
                (REATTACHED, (f"{REATTACH_SECONDS}_sum", ""), (f"{REATTACH_SECONDS}_count", ""))
            ):
                total[i] += await asyncio.to_thread(scrape_sum, edge.metrics_url, name, fragment)
        return total[0], total[1], total[2]

    async def carrying_calls(self, service: str) -> list[Replica]:
        """The running replicas of `service` with calls in progress (all of them if none has one): a
        kill that hits no call would measure nothing."""
        running = self.stack.running(service)
        busy = [
            r
            for r in running
            if (await asyncio.to_thread(scrape_value, r.metrics_url, CALLS_ACTIVE[service]) or 0) > 0
        ]
        return busy or running

    async def warm_up(self) -> None:
        """Two short calls per edge at once (greeted, hung up), so that every edge has its streams to
        every media replica, and every media to every agent (a replacement too), before the idle task
        count is taken: those streams' tasks stay for the process's life, and are not what the leak
        check looks for."""
        addresses = [e.address for e in self.edges]
        calls = [
            chaos_call(
                EdgePool(lambda: addresses, first=k), "chaos", 0.0, asyncio.Event(), self.args.reply_timeout
            )
            for k in range(len(addresses))
            for _ in range(2)
        ]
        await asyncio.gather(*calls)

    async def idle_tasks(self) -> None:
        """Warm up, then every running replica's asyncio tasks while no call is in progress: the leak
        check's floor (the lowest seen, so a phase that left tasks behind cannot raise it)."""
        await self.warm_up()
        await self.leaks()  # every warm-up call over everywhere
        for service in SERVICES:
            for replica in self.stack.running(service):
                value = await asyncio.to_thread(scrape_value, replica.metrics_url, TASKS) or 0.0
                self.tasks_idle[replica.name] = min(value, self.tasks_idle.get(replica.name, value))

    async def leaks(self) -> dict[str, Any]:
        """Every running replica's idle gauges (IDLE_GAUGES) and asyncio tasks beyond its idle count,
        polled until all read 0 (15 s at most)."""
        deadline = time.monotonic() + 15.0
        while True:
            values: dict[str, float | None] = {}
            extra_tasks: dict[str, float] = {}
            for service in SERVICES:
                for replica in self.stack.running(service):
                    page = await asyncio.to_thread(scrape, replica.metrics_url)
                    for gauge in IDLE_GAUGES[service]:
                        if gauge == CALLS_ACTIVE[service] or gauge in page:  # summed over its labels
                            samples = page.get(gauge, {})
                            values[f"{replica.name} {gauge}"] = sum(samples.values()) if samples else None
                    tasks = page.get(TASKS, {}).get("", 0.0)
                    if replica.name in self.tasks_idle:
                        extra_tasks[replica.name] = max(0.0, tasks - self.tasks_idle[replica.name])
            clean = all(v == 0 for v in values.values()) and not any(extra_tasks.values())
            if clean or time.monotonic() > deadline:
                return {"gauges": values, "tasks_over_idle": extra_tasks}
            await asyncio.sleep(0.2)


def kinds_of(args: argparse.Namespace) -> list[str]:
    return [*args.kill, *([EL_CLOSE] if args.elevenlabs_error_close else [])]


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    kinds = kinds_of(args)
    ids = {kind: [f"chaos-{kind}-{i}" for i in range(args.calls)] for kind in kinds}
    # Greeting 0.5 s, then a turn takes ~1.5 s: close during the second to fourth turn.
    specs = {
        agent_id: (rng.uniform(2.5, 2.5 + 2 * args.window) if kind == EL_CLOSE else None)
        for kind in kinds
        for agent_id in ids[kind]
    }
    emulator = ChaosEmulator(specs)
    emulator_url = await asyncio.to_thread(emulator.start)
    stack = ReplicaStack(
        workdir,
        {
            "agent": {
                "AGENT_BACKEND": "elevenlabs",
                "ELEVENLABS_AGENT_ID": "chaos",
                "ELEVENLABS_BASE_URL": emulator_url,
                "ELEVENLABS_ALLOW_AGENT_OVERRIDE": "true",
            },
            "edge": {"PUBLIC_BASE_URL": PUBLIC},
        },
    )
    chaos = Chaos(stack, args, rng)
    phases: list[tuple[dict[str, Any], list[ChaosCall]]] = []
    leaks: dict[str, Any] = {}
    began = time.monotonic()
    emu: dict[str, Any] | None = None
    try:
        for service, count in (("agent", args.agents), ("media", args.media), ("edge", args.edges)):
            for _ in range(count):
                await asyncio.to_thread(chaos.start, service)
        for kind in kinds:
            await chaos.idle_tasks()  # before every phase: replacements started by the last one too
            phases.append(await chaos.phase(kind, ids[kind]))
        leaks = await chaos.leaks()
    finally:
        await asyncio.to_thread(stack.stop)
        emu = await asyncio.to_thread(emulator.stop)
    agents = (emu or {}).get("agents", {})
    return {
        "replicas": {"edge": args.edges, "media": args.media, "agent": args.agents},
        "calls_per_kind": args.calls,
        "seed": args.seed,
        "elapsed_s": round(time.monotonic() - began, 1),
        "kinds": {info["kind"]: kind_report(info, calls, agents) for info, calls in phases},
        "leaks": {
            "active_at_the_end": leaks.get("gauges", {}),
            "tasks_over_idle": leaks.get("tasks_over_idle", {}),
            "emulator_conversations_open": None if emu is None else emu["left_open"],
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="voicebridge-chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=6, help="concurrent calls per failure kind (default 6)")
    ap.add_argument(
        "--kill",
        type=lambda s: [k for k in s.split(",") if k],
        default=["agent", "media", "edge"],
        help="services to SIGKILL a replica of, one phase each, in this order (default agent,media,edge)",
    )
    ap.add_argument("--elevenlabs-error-close", action="store_true", help="and a phase of 1011 closes")
    ap.add_argument("--edges", type=int, default=2)
    ap.add_argument("--media", type=int, default=2)
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--call-seconds", type=float, default=9.0, help="talking time of each call")
    ap.add_argument("--window", type=float, default=1.5, help="the kill lands up to this many s late")
    ap.add_argument(
        "--reply-timeout",
        type=float,
        default=3.0,
        help="s of silence after which a caller, unanswered, speaks again (default 3)",
    )
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--workdir", help="where the replicas' logs go (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--slo-dropped", type=int, help="max calls dropped per kind")
    ap.add_argument("--slo-gap-p95-ms", type=float, help="max heard gap p95 per kind")
    ap.add_argument("--slo-repeated-ms", type=float, help="max agent audio heard twice per kind")
    args = ap.parse_args(argv)
    unknown = [k for k in args.kill if k not in SERVICES]
    if unknown:
        ap.error(f"--kill takes {','.join(SERVICES)}, not {','.join(unknown)}")
    counts = {"edge": args.edges, "media": args.media, "agent": args.agents}
    if min(counts.values()) < 1 or any(counts[k] < 2 for k in args.kill):
        ap.error("every service needs a replica, and one whose replica is killed 2 (one to go on)")
    if args.calls < 1 or not kinds_of(args):
        ap.error("at least one call and one failure kind")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_and_report(parse_args(argv), "voicebridge-chaos", run, slo, text)


if __name__ == "__main__":
    sys.exit(main())
