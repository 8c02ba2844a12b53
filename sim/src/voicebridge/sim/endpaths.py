"""End-path soak: N production-configured calls per way a call can end, and what each left behind.

    voicebridge-endpaths --calls 200 --json --slo-leaked 0

Production-configured: the agent runs the `elevenlabs` backend with an API key (so every call fetches a
signed URL) against the ConvAI emulator, edge→media and media→agent are multiplexed (GRPC_MULTIPLEX's
default), and the edge carries out hang-ups and transfers on Twilio's REST API (the fake, which, like
Twilio, ends the call's media stream as soon as an update lands: the caller's socket is closed then).

The paths (`--paths`, all by default):
- caller_stop: the caller hangs up after the greeting (Twilio `stop`, then the socket closes);
- caller_socket_close: the caller's connection drops, with no `stop` and no close frame;
- agent_end_call: the agent calls its `end_call` tool after the greeting; the edge hangs up by REST;
- transfer: the agent calls `transfer_to_number`; the edge transfers by REST;
- elevenlabs_close: ElevenLabs closes the conversation (1000) after the greeting;
- agent_error: ElevenLabs fails every conversation (error event, 1011), the two that try to continue
  the call included (docs/failover.md): apology, then AGENT_ERROR;
- malformed: the caller sends a malformed Media Streams message; the edge closes the call (1002).

`--concurrency` calls run at once (1 by default); after each round every service's active gauge
(`edge_calls_active`, `media_calls_active`, `agent_sessions_active`) must be back to 0 and the emulator
must hold no open conversation, within `--settle-timeout` (a failure detector, not a measurement).
A leak is a round that did not get there, or a call whose conversation is still open at that point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession, tone
from voicebridge.sim.loadgen import machine, scrape, start_services
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller
from voicebridge.sim.twilio_rest_fake import FakeCall, TwilioRestFake

PATHS = (
    "caller_stop",
    "caller_socket_close",
    "agent_end_call",
    "transfer",
    "elevenlabs_close",
    "agent_error",
    "malformed",
)
AGENT_ID = "endpaths"
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "endpaths-auth-token"
API_KEY = "endpaths-api-key"
TRANSFER_TO = "+15557770000"
GAUGES = {"edge": "edge_calls_active", "media": "media_calls_active", "agent": "agent_sessions_active"}
GREETING_S = 0.3
CALL_TIMEOUT_S = 30.0
# Conversations one call of a path opens: agent_error's first, then two attempts to continue the call.
CONVERSATIONS = {"agent_error": 3}


def service_env(twilio_api_base_url: str) -> dict[str, dict[str, str]]:
    """What each service needs beyond the stack's basics: the agent's key (so signed URLs), the edge's
    REST credentials and transfer destination. Multiplexing is the default and is left on."""
    return {
        "agent": {
            "AGENT_BACKEND": "elevenlabs",
            "ELEVENLABS_AGENT_ID": AGENT_ID,
            "ELEVENLABS_API_KEY": API_KEY,
        },
        "media": {},
        "edge": {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": twilio_api_base_url,
            "TWILIO_VALIDATE_SIGNATURES": "false",
            "EDGE_TRANSFER_DESTINATIONS": TRANSFER_TO,
        },
    }


def agent_script() -> AgentScript:
    """The emulated agent every end-path call talks to: private (signed URLs), μ-law both ways."""
    return AgentScript("ulaw_8000", "ulaw_8000", requires_auth=True, scenario=scenario)


async def scenario(session: EmulatedSession) -> None:
    """The agent's side of each path: greet, then do what the call's `end_path` variable says."""
    path = str(((session.init or {}).get("dynamic_variables") or {}).get("end_path", "caller_stop"))
    await session.send_audio(tone("ulaw_8000", 440, int(GREETING_S * 1000)))
    if path == "agent_end_call":
        await session.call_tool("end_call", {"reason": "the caller said goodbye"})
    elif path == "transfer":
        await session.call_tool("transfer_to_number", {"phone_number": TRANSFER_TO, "reason": "sales"})
    elif path == "elevenlabs_close":
        await session.close(1000, "conversation ended")
    elif path == "agent_error":
        await session.fail(1011, "internal_error", "the agent failed")
    await session.wait_closed(timeout=CALL_TIMEOUT_S)


@dataclass
class PathStats:
    calls: int = 0
    failed: list[str] = field(default_factory=list)  # calls that did not end the way the path ends
    leaked_conversations: int = 0
    rounds_not_idle: int = 0
    not_idle: list[dict[str, float]] = field(default_factory=list)
    settle_s: list[float] = field(default_factory=list)


class EndPaths:
    """Places calls that end by a given path, on a running stack (`ws_url`, each service's /metrics)."""

    def __init__(
        self,
        ws_url: str,
        metrics: dict[str, str],
        emulator: ConvAIEmulator,
        fake: TwilioRestFake,
        concurrency: int = 1,
        settle_timeout: float = 10.0,
    ) -> None:
        self.ws_url, self.metrics, self.emulator, self.fake = ws_url, metrics, emulator, fake
        self.concurrency, self.settle_timeout = concurrency, settle_timeout
        self.callers: dict[str, TwilioCaller] = {}
        self._closers: set[asyncio.Task[None]] = set()
        fake.on_update = self._twilio_ends_stream

    def _twilio_ends_stream(self, call_sid: str, fields: dict[str, str]) -> None:
        """Twilio ends the call's media stream as soon as a hang-up or transfer lands."""
        caller = self.callers.get(call_sid)
        if caller is not None:
            task = asyncio.get_running_loop().create_task(caller.hangup())
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)

    async def one_call(self, path: str) -> str | None:
        """One call ended by `path`; None if it ended that way, else what went wrong."""
        sid = "CA" + secrets.token_hex(16)
        self.fake.calls[sid] = FakeCall(sid, ACCOUNT_SID, "+15550002222", "+15550001111", "in-progress")
        cfg = CallerConfig(
            url=self.ws_url, call_sid=sid, account_sid=ACCOUNT_SID, custom_parameters={"end_path": path}
        )
        caller = self.callers[sid] = TwilioCaller(cfg)
        try:
            await caller.connect()
            await caller.wait_heard(GREETING_S * 0.5, timeout=CALL_TIMEOUT_S)
            if path == "caller_stop":
                await caller.hangup()
            elif path == "caller_socket_close":
                await caller.close_abruptly()
            elif path == "malformed":
                await caller.send_raw(json.dumps({"event": "media", "streamSid": cfg.stream_sid}))
                await caller.wait_closed(CALL_TIMEOUT_S)
            else:
                await caller.wait_closed(CALL_TIMEOUT_S)
            return self._check(path, sid, caller)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await caller.hangup()
            self.callers.pop(sid, None)

    def _check(self, path: str, sid: str, caller: TwilioCaller) -> str | None:
        updates = self.fake.calls[sid].updates
        if path == "agent_end_call" and {"Status": "completed"} not in updates:
            return "no REST hang-up"
        if path == "transfer" and not any("Twiml" in u for u in updates):
            return "no REST transfer"
        if path == "malformed" and caller.close_code != 1002:
            return f"closed with {caller.close_code}, not 1002"
        return None

    def gauges(self) -> dict[str, float]:
        values = {}
        for service, name in GAUGES.items():
            samples = scrape(self.metrics[service]).get(name, {})
            values[service] = sum(samples.values())
        values["emulator_open_conversations"] = self.emulator.open_conversations
        return values

    async def settle(self) -> tuple[float, dict[str, float]]:
        """Seconds until every gauge is 0 and no conversation is open (or the timeout); the last reading."""
        began = time.monotonic()
        deadline = began + self.settle_timeout
        while True:
            values = await asyncio.to_thread(self.gauges)
            if not any(values.values()) or time.monotonic() > deadline:
                return time.monotonic() - began, values
            await asyncio.sleep(0.02)  # other processes' state: polled, no event to await

    async def run_path(self, path: str, n: int) -> PathStats:
        stats = PathStats()
        while stats.calls < n:
            batch = min(self.concurrency, n - stats.calls)
            first_session = len(self.emulator.sessions)
            outcomes = await asyncio.gather(*(self.one_call(path) for _ in range(batch)))
            stats.calls += batch
            stats.failed += [o for o in outcomes if o is not None]
            settle_s, values = await self.settle()
            stats.settle_s.append(settle_s)
            if any(values.values()):
                stats.rounds_not_idle += 1
                stats.not_idle.append(values)
            stats.leaked_conversations += sum(
                1 for s in self.emulator.sessions[first_session:] if not s.closed
            )
        return stats

    async def aclose(self) -> None:
        await asyncio.gather(*self._closers, return_exceptions=True)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(results: dict[str, PathStats], args: Any, wall_s: float) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, st in results.items():
        paths[path] = {
            "calls": st.calls,
            "ended_otherwise": len(st.failed),
            "first_failures": st.failed[:3],
            "leaked_conversations": st.leaked_conversations,
            "rounds_not_idle": st.rounds_not_idle,
            "not_idle_readings": st.not_idle[:3],
            "settle_ms_p50": round(1000 * (_pct(st.settle_s, 0.5) or 0), 1),
            "settle_ms_max": round(1000 * max(st.settle_s, default=0), 1),
        }
    leaked = sum(p["leaked_conversations"] + p["rounds_not_idle"] for p in paths.values())
    failed = sum(p["ended_otherwise"] for p in paths.values())
    out: dict[str, Any] = {
        "config": {
            "calls_per_path": args.calls,
            "concurrency": args.concurrency,
            "backend": "elevenlabs (signed URLs) against the ConvAI emulator",
            "grpc_multiplex": True,
        },
        "machine": machine(),
        "wall_s": round(wall_s, 1),
        "paths": paths,
        "leaked": leaked,
        "ended_otherwise": failed,
    }
    slo: dict[str, Any] = {}
    if args.slo_leaked is not None:
        slo["leaked"] = {"limit": args.slo_leaked, "value": leaked, "ok": leaked <= args.slo_leaked}
    if args.slo_failed is not None:
        slo["ended_otherwise"] = {"limit": args.slo_failed, "value": failed, "ok": failed <= args.slo_failed}
    out["slo"] = slo
    out["ok"] = all(v["ok"] for v in slo.values())
    return out


def _text(out: dict[str, Any]) -> str:
    lines = [
        f"{out['config']['calls_per_path']} calls per end path, {out['config']['concurrency']} at a time, "
        f"{out['config']['backend']}, multiplexed; {out['wall_s']} s",
        f"{'path':<22}{'calls':>7}{'ended otherwise':>17}{'leaked conv.':>14}{'rounds not idle':>17}"
        f"{'settle p50 ms':>15}{'max ms':>9}",
    ]
    for path, p in out["paths"].items():
        lines.append(
            f"{path:<22}{p['calls']:>7}{p['ended_otherwise']:>17}{p['leaked_conversations']:>14}"
            f"{p['rounds_not_idle']:>17}{p['settle_ms_p50']:>15}{p['settle_ms_max']:>9}"
        )
    emu = out.get("emulator", {})
    lines.append(
        f"emulator: {emu.get('conversations')} conversations, {emu.get('signed_url_requests')} signed URLs"
        f" fetched, {emu.get('open_conversations_at_end')} open at the end"
    )
    for name, check in out["slo"].items():
        lines.append(f"SLO {name} <= {check['limit']}: {check['value']} {'ok' if check['ok'] else 'FAILED'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicebridge-endpaths", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per end path (default 20)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--concurrency", type=int, default=1, help="calls at once; gauges checked per round")
    parser.add_argument("--settle-timeout", type=float, default=10.0, help="seconds before a round is a leak")
    parser.add_argument("--workdir", type=Path, default=None, help="where the services' logs go")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--slo-leaked", type=int, default=None, help="fail above this many leaks")
    parser.add_argument(
        "--slo-failed", type=int, default=None, help="fail above this many calls ended otherwise"
    )
    args = parser.parse_args(argv)
    args.paths = [p for p in args.paths.split(",") if p]
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    return args


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    emulator = ConvAIEmulator(host="127.0.0.1", port=0, api_key=API_KEY)
    emulator.add_agent(AGENT_ID, agent_script())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="voicebridge-endpaths-"))
    workdir.mkdir(parents=True, exist_ok=True)
    async with emulator, TwilioRestFake({ACCOUNT_SID: AUTH_TOKEN}) as fake:
        extra = service_env(fake.base_url)
        extra["agent"]["LOG_LEVEL"] = extra["media"]["LOG_LEVEL"] = extra["edge"]["LOG_LEVEL"] = "INFO"
        stack = await asyncio.to_thread(start_services, workdir, emulator.base_url, extra_env=extra)
        soak = EndPaths(stack.ws_url, stack.metrics, emulator, fake, args.concurrency, args.settle_timeout)
        began = time.monotonic()
        try:
            results = {path: await soak.run_path(path, args.calls) for path in args.paths}
        finally:
            await soak.aclose()
            await asyncio.to_thread(stack.stop)
        out = report(results, args, time.monotonic() - began)
        out["emulator"] = {
            "conversations": len(emulator.sessions),
            "signed_url_requests": len(emulator.signed_url_requests),
            "open_conversations_at_end": emulator.open_conversations,
        }
        out["logs"] = str(workdir)
        return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = asyncio.run(_main(args))
    print(json.dumps(out, indent=2) if args.json else _text(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
