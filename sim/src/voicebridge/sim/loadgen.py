"""Load generator: N simulated Twilio callers against the real services, with pass/fail SLOs.

    voicebridge-load --calls 50 --duration 30 --json \\
        --slo-cpu-ms-per-call-s 10 --slo-p99-added-ms 5 --slo-gaps 0 --slo-lost 0
    voicebridge-load --sequential 1000 --json \\
        --slo-rss-growth-mib 4 --slo-teardown-ms 500   # RSS growth, teardown time over back-to-back calls
    voicebridge-load --sequential 1000 --signed-urls --json   # ...and the agent's log redaction set

It starts the ConvAI emulator (a child process; its agent greets, then echoes each caller utterance, so
turns happen) and the three services (agent with the `elevenlabs` backend pointed at the emulator),
or attaches to a running stack (`--attach`). The callers run in this process, paced like Twilio
(20 ms frames on an absolute clock, real-time playout, marks echoed when played), so the services'
processes carry only the services' work. Each caller talks, waits for the reply to finish, and talks
again until the duration is up, then waits for quiet and hangs up.

Where each figure comes from:
- added latency each way: the services' own histograms, as /metrics deltas over the run
  (inbound `agent_elevenlabs_inbound_added_latency_seconds`: caller frame at the edge → its
  user_audio_chunk written to ElevenLabs; outbound `edge_outbound_added_latency_seconds`: agent audio
  received, or due if paced → written to Twilio). Quantiles interpolate inside buckets like
  Prometheus's histogram_quantile; `share_within_5ms` is exact (5 ms is a bucket bound).
- heard turn latency: media's `media_heard_turn_latency_seconds` (deltas), and end to end at the
  callers (end of speech sent → first reply audio played), which includes the emulator's 700 ms
  end-of-speech wait.
- playback gaps: holes in what each caller heard, on the caller's playout timeline (Twilio's buffer,
  played in real time): consecutive 20 ms frames of agent audio more than 40 ms apart, i.e. the
  buffer ran dry for over 20 ms, within one utterance (a silence of 0.5 s or more ends it; the
  scenario's turns are >1 s apart). Media may send frames larger than 20 ms (PLAYOUT_FRAME_MS): how
  they are cut does not matter, only whether the buffer ran dry.
- lost frames: caller audio sent vs user_audio_chunk bytes the emulator received; agent audio the
  emulator sent vs media payload bytes the callers received (20 ms = 160 bytes of μ-law).
- CPU: user+system seconds of the three service processes (psutil) while all N calls are up,
  divided by N × the window: ms of CPU per call-second. Peak RSS: VmHWM of each process.
- teardown (sequential runs): from the caller's hang-up until every service's own gauge of calls in
  progress (edge_calls_active, media_calls_active, agent_sessions_active) reads 0 again, polled every
  10 ms; a call still counted after 10 s is counted as not torn down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller
from voicebridge.sim.voice import speech_like

RATE = 8000
FRAME_BYTES = 160
GAP_S = 0.040
UTTERANCE_BREAK_S = 0.5
SERVICES = ("edge", "media", "agent")
INBOUND = "agent_elevenlabs_inbound_added_latency_seconds"
OUTBOUND = "edge_outbound_added_latency_seconds"
HEARD = "media_heard_turn_latency_seconds"
CALLS_ACTIVE = {"edge": "edge_calls_active", "media": "media_calls_active", "agent": "agent_sessions_active"}
TEARDOWN_GIVE_UP_S = 10.0
REDACTIONS = "voicebridge_log_redactions"  # the agent's log redaction set (signed URLs of live calls)


# --- the emulator, in its own process -------------------------------------------------------------


def _emulator_main(port_out: Any, stop: Any, totals_out: Any, requires_auth: bool = False) -> None:
    """Child process: the ConvAI emulator with byte counters, until `stop` is set. With
    `requires_auth` its agent is private: every conversation needs a signed URL."""
    from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, default_scenario

    totals = {"sessions": 0, "received_bytes": 0, "sent_bytes": 0}

    async def counted(session: Any) -> None:
        send_audio = session.send_audio

        async def send_and_count(raw: bytes, *args: Any, **kwargs: Any) -> int:
            totals["sent_bytes"] += len(raw)
            return await send_audio(raw, *args, **kwargs)

        session.send_audio = send_and_count
        totals["sessions"] += 1
        try:
            await default_scenario(session)
        finally:
            with contextlib.suppress(Exception):
                await session.wait_closed(timeout=30)
            totals["received_bytes"] += len(session.received_audio) + len(session.early_audio)

    async def run() -> None:
        emulator = ConvAIEmulator(host="127.0.0.1", port=0)
        emulator.add_agent(
            "load",
            AgentScript(
                input_format="ulaw_8000",
                output_format="ulaw_8000",
                scenario=counted,
                requires_auth=requires_auth,
            ),
        )
        await emulator.start()
        port_out.put(emulator.base_url)
        await asyncio.to_thread(stop.wait)
        await asyncio.sleep(1.0)  # let the last sessions' finally blocks count
        await emulator.stop()
        totals_out.put(totals)

    uvloop.run(run())  # the load's own overhead is not what is measured: keep it small


class EmulatorProcess:
    def __init__(self, requires_auth: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._urls, self._totals, self._stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.proc = ctx.Process(
            target=_emulator_main,
            args=(self._urls, self._stop, self._totals, requires_auth),
            daemon=True,
        )
        self.base_url = ""

    def start(self) -> str:
        self.proc.start()
        self.base_url = self._urls.get(timeout=30)
        return self.base_url

    def stop(self) -> dict[str, int] | None:
        self._stop.set()
        try:
            return self._totals.get(timeout=60)
        except Exception:
            return None
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()


# --- the services -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as reply:  # noqa: S310 - loopback
            return reply.status == 200
    except OSError:
        return False


@dataclass
class StackInfo:
    ws_url: str
    metrics: dict[str, str]
    pids: dict[str, int]
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:  # edge first: calls drain towards the agent
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for log in self.logs:
            log.close()


def _tls_env(bin_dir: Path, workdir: Path) -> dict[str, dict[str, str]]:
    """Per service GRPC_TLS_* naming fresh development certificates (voicebridge-dev-certs)."""
    certs = workdir / "certs"
    command = [str(bin_dir / "voicebridge-dev-certs"), "--out", str(certs)]
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - our own console script
    return {
        name: {
            "GRPC_TLS_CA": str(certs / "ca.pem"),
            "GRPC_TLS_CERT": str(certs / f"{name}.pem"),
            "GRPC_TLS_KEY": str(certs / f"{name}-key.pem"),
        }
        for name in ("edge", "media", "agent")
    }


def start_services(
    workdir: Path,
    emulator_url: str,
    tls: bool = False,
    extra_env: dict[str, dict[str, str]] | None = None,
    signed_urls: bool = False,
) -> StackInfo:
    """agent, media, edge from their console scripts, each ready before the next starts; with `tls`
    every gRPC hop is mutual TLS with development certificates (as docker-compose.yml runs them);
    `extra_env` adds variables per service name. With `signed_urls` the agent has an API key and
    fetches a signed URL for every call."""
    bin_dir = Path(sys.executable).parent
    agent_port, media_port, edge_port = _free_port(), _free_port(), _free_port()
    metrics_ports = {"agent": _free_port(), "media": _free_port(), "edge": _free_port()}
    base = {**os.environ, "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    base.pop("VOICEBRIDGE_ENV_FILE", None)
    tls_env = _tls_env(bin_dir, workdir) if tls else {"edge": {}, "media": {}, "agent": {}}
    specs = [
        (
            "agent",
            {
                "AGENT_LISTEN": f"127.0.0.1:{agent_port}",
                "AGENT_METRICS_PORT": str(metrics_ports["agent"]),
                "AGENT_BACKEND": "elevenlabs",
                "ELEVENLABS_AGENT_ID": "load",
                "ELEVENLABS_BASE_URL": emulator_url,
                **tls_env["agent"],
                **({"ELEVENLABS_API_KEY": "xi-load-generator-key"} if signed_urls else {}),
            },
            f"http://127.0.0.1:{metrics_ports['agent']}/metrics",
        ),
        (
            "media",
            {
                "MEDIA_LISTEN": f"127.0.0.1:{media_port}",
                "MEDIA_METRICS_PORT": str(metrics_ports["media"]),
                "AGENT_TARGET": f"127.0.0.1:{agent_port}",
                **tls_env["media"],
            },
            f"http://127.0.0.1:{metrics_ports['media']}/metrics",
        ),
        (
            "edge",
            {
                "EDGE_HOST": "127.0.0.1",
                "EDGE_PORT": str(edge_port),
                "EDGE_METRICS_PORT": str(metrics_ports["edge"]),
                "MEDIA_TARGET": f"127.0.0.1:{media_port}",
                **tls_env["edge"],
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{edge_port}",
                "TWILIO_VALIDATE_SIGNATURES": "false",
            },
            f"http://127.0.0.1:{edge_port}/healthz",
        ),
    ]
    info = StackInfo(
        ws_url=f"ws://127.0.0.1:{edge_port}/twilio/media",
        metrics={
            "edge": f"http://127.0.0.1:{metrics_ports['edge']}/metrics",
            "media": f"http://127.0.0.1:{metrics_ports['media']}/metrics",
            "agent": f"http://127.0.0.1:{metrics_ports['agent']}/metrics",
        },
        pids={},
    )
    try:
        for name, env, ready_url in specs:
            env.update((extra_env or {}).get(name, {}))
            log = (workdir / f"{name}.log").open("ab")
            info.logs.append(log)
            proc = subprocess.Popen(  # noqa: S603 - our own console scripts
                [str(bin_dir / f"voicebridge-{name}")],
                env={**base, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            info.procs.insert(0, proc)
            info.pids[name] = proc.pid
            deadline = time.monotonic() + 30
            while not _http_ok(ready_url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {workdir / (name + '.log')}")
                time.sleep(0.05)
    except BaseException:
        info.stop()
        raise
    return info


# --- metrics ----------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$", re.M)
_LE = re.compile(r'le="([^"]+)"')


def scrape(url: str) -> dict[str, dict[str, float]]:
    """name → {label string → value}; exposition text from one service."""
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback
        text = reply.read().decode()
    out: dict[str, dict[str, float]] = {}
    for name, labels, value in _SAMPLE.findall(text):
        out.setdefault(name, {})[labels or ""] = float(value)
    return out


def scrape_value(url: str, name: str) -> float | None:
    """One unlabelled sample of a service's /metrics, or None when it is absent."""
    return scrape(url).get(name, {}).get("")


def histogram_delta(before: dict, after: dict, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of the observations made between two scrapes."""
    buckets: dict[float, float] = {}
    for labels, value in after.get(f"{name}_bucket", {}).items():
        le = _LE.search(labels)
        if le is None:
            continue
        bound = float(le.group(1))
        prior = before.get(f"{name}_bucket", {}).get(labels, 0.0)
        buckets[bound] = buckets.get(bound, 0.0) + value - prior
    return sorted(buckets.items())


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile's linear interpolation inside the bucket holding rank q·n."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def latency_summary(buckets: list[tuple[float, float]], within_s: float = 0.005) -> dict[str, Any]:
    total = buckets[-1][1] if buckets else 0.0
    within = next((c for b, c in buckets if abs(b - within_s) < 1e-12), None)
    return {
        "count": int(total),
        "p50_ms": _ms(quantile(0.5, buckets)),
        "p99_ms": _ms(quantile(0.99, buckets)),
        "share_within_5ms": round(within / total, 5) if within is not None and total else None,
    }


# Messages each service handles, by the counters that count them (per-message cost = CPU / messages).
# gRPC figures count call messages (as if every call had its own stream); GRPC_WIRE counts the gRPC
# messages that actually crossed, which on multiplexed streams carry several call messages each.
_CALL = 'grpc_method="Call"'
_CONVERSE = 'grpc_method="Converse"'
MESSAGE_COUNTERS = {
    "edge": {
        "twilio_ws_in": ("edge_frames_total", 'direction="in"'),
        "twilio_ws_out": ("edge_frames_total", 'direction="out"'),
        "grpc_sent": ("grpc_client_msg_sent_total", _CALL),
        "grpc_received": ("grpc_client_msg_received_total", _CALL),
    },
    "media": {
        "grpc_from_edge": ("grpc_server_msg_received_total", _CALL),
        "grpc_to_edge": ("grpc_server_msg_sent_total", _CALL),
        "grpc_to_agent": ("grpc_client_msg_sent_total", _CONVERSE),
        "grpc_from_agent": ("grpc_client_msg_received_total", _CONVERSE),
    },
    "agent": {
        "grpc_from_media": ("grpc_server_msg_received_total", _CONVERSE),
        "grpc_to_media": ("grpc_server_msg_sent_total", _CONVERSE),
        "elevenlabs_ws_out": ("agent_elevenlabs_audio_chunks_total", 'direction="sent"'),
        "elevenlabs_ws_in": ("agent_elevenlabs_audio_chunks_total", 'direction="received"'),
    },
}


GRPC_WIRE = {  # service -> (counter, per-call method, multiplexed method)
    "edge": [("grpc_client_msg_sent_total", "Call"), ("grpc_client_msg_received_total", "Call")],
    "media": [
        ("grpc_server_msg_received_total", "Call"),
        ("grpc_server_msg_sent_total", "Call"),
        ("grpc_client_msg_sent_total", "Converse"),
        ("grpc_client_msg_received_total", "Converse"),
    ],
    "agent": [("grpc_server_msg_received_total", "Converse"), ("grpc_server_msg_sent_total", "Converse")],
}
LOOP_LAG = "voicebridge_event_loop_lag_seconds"


def wire_rates(before: dict, after: dict, call_seconds: float) -> dict[str, float]:
    """gRPC messages per call-second that crossed each service's hops, batches counted once.

    A multiplexed call's messages are counted under its per-call method and the batches under the
    *Many method; per-call streams count only under the per-call method."""
    out = {}
    for service, counters in GRPC_WIRE.items():
        if service not in before or service not in after:
            continue
        total = 0.0
        for name, method in counters:
            many = counter_delta(before[service], after[service], name, f'grpc_method="{method}Many"')
            one = counter_delta(before[service], after[service], name, f'grpc_method="{method}"')
            total += many if many else one
        out[service] = round(total / call_seconds, 2)
    return out


def counter_delta(before: dict, after: dict, name: str, fragment: str) -> float:
    return sum(v - before.get(name, {}).get(k, 0.0) for k, v in after.get(name, {}).items() if fragment in k)


def message_rates(before: dict, after: dict, call_seconds: float) -> dict[str, dict[str, float]]:
    """Messages per call-second that each service handled between two scrapes of every service."""
    return {
        service: {
            kind: round(counter_delta(before[service], after[service], name, frag) / call_seconds, 2)
            for kind, (name, frag) in kinds.items()
        }
        for service, kinds in MESSAGE_COUNTERS.items()
        if service in before and service in after
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# --- processes --------------------------------------------------------------------------------------


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        t = psutil.Process(pid).cpu_times()
        out[name] = t.user + t.system
    return out


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), to tell other load from ours."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def own_cpu_seconds(service_pids: dict[str, int]) -> float:
    """This process and its children but the services (i.e. the emulator): the load generator's CPU."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        if child.pid in service_pids.values():
            continue
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def rss_bytes(pids: dict[str, int]) -> dict[str, int]:
    import psutil

    return {name: psutil.Process(pid).memory_info().rss for name, pid in pids.items()}


def peak_rss_bytes(pids: dict[str, int]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            out[name] = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]
        except (OSError, AttributeError):
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        model = found.group(1) if found else ""
    mem = None
    with contextlib.suppress(OSError, AttributeError):
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024  # type: ignore[union-attr]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_mib": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


# --- one caller ---------------------------------------------------------------------------------------


@dataclass
class CallResult:
    summary: dict[str, Any]
    heard_spans: list[tuple[int, int]]  # sample ranges of agent audio playing, as the caller heard it
    bytes_received: int
    voice_bytes_sent: int
    error: str | None = None


async def run_call(
    url: str, speech: bytes, seconds: float, start_delay: float, all_up: asyncio.Event | None
) -> CallResult:
    """Talk, wait for the reply to finish, talk again... for `seconds`; then wait for quiet, hang up."""
    await asyncio.sleep(start_delay)
    caller = TwilioCaller(CallerConfig(url=url, call_sid=f"CAload{os.getpid()}{time.monotonic_ns()}"))
    error = None
    try:
        await caller.connect()
        if all_up is not None:
            all_up.set()
        end = time.monotonic() + seconds
        await caller.wait_agent_quiet(0.3, timeout=15)  # the greeting
        while time.monotonic() < end and not caller.closed:
            heard = caller.samples_heard()
            await caller.speak(speech)
            await caller.wait_heard(heard / RATE + 0.1, timeout=15)  # the reply started
            await caller.wait_agent_quiet(0.4, timeout=30)  # ...and finished
        await caller.wait_agent_quiet(0.4, timeout=30)
    except Exception as exc:  # a failed call is a result, not a crash of the whole run
        error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await caller.hangup()
    received = 0
    for _, msg in caller.received:
        if isinstance(msg, dict) and msg.get("event") == "media":
            received += len(msg["media"]["payload"]) * 3 // 4 - msg["media"]["payload"][-2:].count("=")
    voice = caller.media_frames_sent * FRAME_BYTES
    return CallResult(caller.summary(), caller.heard_spans(), received, voice, error)


def gaps(spans: list[tuple[int, int]]) -> tuple[int, float]:
    """(holes in playback inside an utterance where frames were over 40 ms apart, the largest
    in-utterance frame spacing in seconds), from the sample spans during which agent audio played."""
    frame = FRAME_BYTES / RATE
    count, worst = 0, frame if spans else 0.0
    for (_, end), (start, _) in itertools.pairwise(spans):
        spacing = (start - end) / RATE + frame  # last frame before the hole -> first frame after it
        if spacing - frame >= UTTERANCE_BREAK_S:
            continue
        worst = max(worst, spacing)
        if spacing > GAP_S + 1e-9:
            count += 1
    return count, worst


# --- the run ------------------------------------------------------------------------------------------


async def _concurrent(stack: StackInfo, args: argparse.Namespace, speech: bytes) -> dict[str, Any]:
    ramp = min(2.0, 0.02 * args.calls)
    before = {s: scrape(u) for s, u in stack.metrics.items()}
    tasks = [
        asyncio.create_task(
            run_call(stack.ws_url, speech, args.duration, i * ramp / max(args.calls, 1), None)
        )
        for i in range(args.calls)
    ]
    # CPU window: from the last call's start (plus a settling second) to the end of the talking time.
    await asyncio.sleep(ramp + 1.0)
    window0 = {s: scrape(u) for s, u in stack.metrics.items()}
    cpu0, t0 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    busy0, own0 = busy_cpu_seconds(), own_cpu_seconds(stack.pids)
    rss_peak: dict[str, int] = {}
    window_end = t0 + max(1.0, args.duration - 1.0)
    while time.monotonic() < window_end:
        if stack.pids:
            for name, rss in rss_bytes(stack.pids).items():
                rss_peak[name] = max(rss_peak.get(name, 0), rss)
        await asyncio.sleep(0.5)
    cpu1, t1 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    busy1, own1 = busy_cpu_seconds(), own_cpu_seconds(stack.pids)
    window1 = {s: scrape(u) for s, u in stack.metrics.items()}
    results = await asyncio.gather(*tasks)
    after = {s: scrape(u) for s, u in stack.metrics.items()}
    window = t1 - t0
    cpu = {n: cpu1[n] - cpu0[n] for n in cpu1}
    call_seconds = args.calls * window
    return {
        "results": results,
        "before": before,
        "after": after,
        "cpu": cpu,
        "window_s": window,
        "call_seconds": call_seconds,
        "rss_sampled_peak": rss_peak,
        "messages_per_call_second": message_rates(window0, window1, call_seconds),
        "grpc_wire_messages_per_call_second": wire_rates(window0, window1, call_seconds),
        "event_loop_lag_p99_ms": {
            s: _ms(quantile(0.99, histogram_delta(window0[s], window1[s], LOOP_LAG)))
            for s in window1
            if s in window0
        },
        "cores_busy": {
            "services": round(sum(cpu1[n] - cpu0[n] for n in cpu1) / window, 3),
            "load_generator": round((own1 - own0) / window, 3),
            "other_processes": round(
                (busy1 - busy0 - (own1 - own0) - sum(cpu1[n] - cpu0[n] for n in cpu1)) / window, 3
            ),
        },
    }


def calls_in_progress(stack: StackInfo) -> float:
    """Calls some service still counts as in progress (the sum of the three gauges)."""
    total = 0.0
    for service, gauge in CALLS_ACTIVE.items():
        if service in stack.metrics:
            total += sum(scrape(stack.metrics[service]).get(gauge, {}).values())
    return total


async def teardown_seconds(stack: StackInfo) -> float | None:
    """From now (the hang-up) until no service counts a call in progress; None if it never gets there."""
    began = time.monotonic()
    while calls_in_progress(stack):
        if time.monotonic() - began > TEARDOWN_GIVE_UP_S:
            return None
        await asyncio.sleep(0.01)
    return time.monotonic() - began


async def _sequential(stack: StackInfo, args: argparse.Namespace, speech: bytes) -> dict[str, Any]:
    before = {s: scrape(u) for s, u in stack.metrics.items()}
    rss_trend: list[dict[str, Any]] = []
    results = []
    teardowns: list[float | None] = []
    every = max(1, args.sequential // 20)
    cpu0, t0 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    for i in range(args.sequential):
        results.append(await run_call(stack.ws_url, speech, args.call_seconds, 0.0, None))
        teardowns.append(await teardown_seconds(stack))
        if stack.pids and ((i + 1) % every == 0 or i == 0):
            row: dict[str, Any] = {"calls": i + 1, **rss_bytes(stack.pids)}
            if "agent" in stack.metrics:
                await _agent_idle(stack.metrics["agent"])  # the call's session has closed its scope
                row[REDACTIONS] = scrape_value(stack.metrics["agent"], REDACTIONS)
            rss_trend.append(row)
    cpu1, t1 = (cpu_seconds(stack.pids) if stack.pids else {}), time.monotonic()
    after = {s: scrape(u) for s, u in stack.metrics.items()}
    return {
        "results": results,
        "before": before,
        "after": after,
        "cpu": {n: cpu1[n] - cpu0[n] for n in cpu1},
        "window_s": t1 - t0,
        "call_seconds": t1 - t0,
        "rss_trend": rss_trend,
        "teardowns": teardowns,
    }


async def _agent_idle(url: str, timeout_s: float = 5.0) -> None:
    """Until the agent has no session open (the last call's teardown is asynchronous), or timeout_s."""
    deadline = time.monotonic() + timeout_s
    while scrape_value(url, "agent_sessions_active") and time.monotonic() < deadline:  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.02)


def report(
    run: dict[str, Any], args: argparse.Namespace, stack: StackInfo, emu: dict[str, int] | None
) -> dict[str, Any]:
    results: list[CallResult] = run["results"]
    before, after = run["before"], run["after"]
    inbound = latency_summary(histogram_delta(before["agent"], after["agent"], INBOUND))
    outbound = latency_summary(histogram_delta(before["edge"], after["edge"], OUTBOUND))
    heard = latency_summary(histogram_delta(before["media"], after["media"], HEARD))
    e2e = sorted(x for r in results for x in r.summary.get("response_latencies_s", []))
    gap_counts = [gaps(r.heard_spans) for r in results]
    caller_sent = sum(r.voice_bytes_sent for r in results)
    agent_heard = sum(r.bytes_received for r in results)
    cpu = run["cpu"]
    call_s = run["call_seconds"]
    per_service = {n: round(c * 1000 / call_s, 3) for n, c in cpu.items()} if cpu and call_s else {}
    lost_in = (caller_sent - emu["received_bytes"]) / FRAME_BYTES if emu else None
    lost_out = (emu["sent_bytes"] - agent_heard) / FRAME_BYTES if emu else None
    out: dict[str, Any] = {
        "mode": "sequential" if args.sequential else "concurrent",
        "grpc_tls": bool(getattr(args, "tls", False)) and not args.attach,
        "calls": len(results),
        "failed_calls": sum(1 for r in results if r.error),
        "errors": sorted({r.error for r in results if r.error})[:5],
        "duration_s": args.call_seconds if args.sequential else args.duration,
        "cpu_window_s": round(run["window_s"], 2),
        "added_latency": {"inbound_caller_to_elevenlabs": inbound, "outbound_elevenlabs_to_caller": outbound},
        "heard_turn_latency": {
            "media_histogram": heard,
            "caller_end_to_end": {
                "count": len(e2e),
                "p50_ms": _ms(_pct(e2e, 0.5)),
                "p99_ms": _ms(_pct(e2e, 0.99)),
                "note": "end of speech sent -> reply heard; includes the emulator's 700 ms wait",
            },
        },
        "playback_gaps": {
            "over_40ms": sum(c for c, _ in gap_counts),
            "worst_in_utterance_ms": _ms(max((w for _, w in gap_counts), default=0.0)),
            "calls_with_gaps": sum(1 for c, _ in gap_counts if c),
        },
        "lost_frames": {
            "caller_to_elevenlabs": None if lost_in is None else round(lost_in, 1),
            "elevenlabs_to_caller": None if lost_out is None else round(lost_out, 1),
            "caller_frames_sent": caller_sent // FRAME_BYTES,
            "emulator_frames_received": None if emu is None else emu["received_bytes"] // FRAME_BYTES,
            "emulator_frames_sent": None if emu is None else emu["sent_bytes"] // FRAME_BYTES,
            "caller_frames_heard": agent_heard // FRAME_BYTES,
        },
        "cpu_ms_per_call_second": {
            "total": round(sum(per_service.values()), 3) if per_service else None,
            **per_service,
        },
        "messages_per_call_second": run.get("messages_per_call_second"),
        "grpc_wire_messages_per_call_second": run.get("grpc_wire_messages_per_call_second"),
        "event_loop_lag_p99_ms": run.get("event_loop_lag_p99_ms"),
        "cpu_us_per_message": _per_message(per_service, run.get("messages_per_call_second")),
        "peak_rss_mib": {n: _mib(v) for n, v in peak_rss_bytes(stack.pids).items()} if stack.pids else {},
        "machine": {**args.machine, "cores_busy_during_window": run.get("cores_busy")},
    }
    if "rss_trend" in run:
        trend = run["rss_trend"]
        out["rss_trend_mib"] = [
            {k: (v if k in ("calls", REDACTIONS) else _mib(v)) for k, v in row.items()} for row in trend
        ]
        sizes = [row[REDACTIONS] for row in trend if row.get(REDACTIONS) is not None]
        if sizes:
            out["agent_log_redactions"] = {"first": sizes[0], "last": sizes[-1], "max": max(sizes)}
        if len(trend) >= 3:
            warm = trend[max(1, len(trend) // 10)]
            out["rss_growth_after_warmup_mib"] = {
                n: _mib(trend[-1][n] - warm[n]) for n in SERVICES if n in warm
            }
    if "teardowns" in run:
        done = sorted(t for t in run["teardowns"] if t is not None)
        out["teardown_ms"] = {
            "count": len(done),
            "p50_ms": _ms(_pct(done, 0.5)),
            "p99_ms": _ms(_pct(done, 0.99)),
            "max_ms": _ms(done[-1] if done else None),
            "not_torn_down": sum(1 for t in run["teardowns"] if t is None),
        }
    out["slo"] = _slo(out, args)
    return out


def _per_message(cpu_ms: dict[str, float], rates: dict[str, dict[str, float]] | None) -> dict[str, float]:
    """Each service's CPU per message it handled (all work, DSP and timers included, over messages)."""
    if not rates:
        return {}
    return {
        s: round(cpu_ms[s] * 1000 / sum(rates[s].values()), 1)
        for s in cpu_ms
        if s in rates and sum(rates[s].values())
    }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _mib(v: int | None) -> float | None:
    return None if v is None else round(v / 2**20, 1)


def _slo(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Each SLO given on the command line: the measured value and whether it was met."""
    checks: dict[str, Any] = {}
    if args.slo_cpu_ms_per_call_s is not None:
        value = out["cpu_ms_per_call_second"]["total"]
        checks["cpu_ms_per_call_s"] = (value, value is not None and value <= args.slo_cpu_ms_per_call_s)
    if args.slo_p99_added_ms is not None:
        lat = out["added_latency"]
        worst = [lat[k]["p99_ms"] for k in lat]
        value = None if None in worst else max(worst)
        checks["p99_added_ms"] = (value, value is not None and value <= args.slo_p99_added_ms)
    if args.slo_gaps is not None:
        value = out["playback_gaps"]["over_40ms"]
        checks["gaps"] = (value, value <= args.slo_gaps)
    if args.slo_worst_gap_ms is not None:
        value = out["playback_gaps"]["worst_in_utterance_ms"]
        checks["worst_gap_ms"] = (value, value is not None and value <= args.slo_worst_gap_ms)
    if args.slo_rss_growth_mib is not None:
        growth = out.get("rss_growth_after_warmup_mib") or {}
        value = max((v for v in growth.values() if v is not None), default=None)
        checks["rss_growth_mib"] = (value, value is not None and value <= args.slo_rss_growth_mib)
    if args.slo_teardown_ms is not None:
        teardown = out.get("teardown_ms") or {}
        value = teardown.get("p99_ms")
        met = value is not None and value <= args.slo_teardown_ms and not teardown.get("not_torn_down")
        checks["teardown_p99_ms"] = (value, met)
    if args.slo_lost is not None:
        lost = out["lost_frames"]
        values = [lost["caller_to_elevenlabs"], lost["elevenlabs_to_caller"]]
        value = None if None in values else max(abs(v) for v in values)
        checks["lost_frames"] = (value, value is not None and value <= args.slo_lost)
    if out["failed_calls"]:
        checks["failed_calls"] = (out["failed_calls"], False)
    return {
        "met": all(ok for _, ok in checks.values()),
        "checks": {k: {"value": v, "met": ok} for k, (v, ok) in checks.items()},
    }


def _parse_kv(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="voicebridge-load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=10, help="concurrent calls (default 10)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds each concurrent call talks")
    ap.add_argument(
        "--sequential", type=int, default=0, metavar="M", help="M calls one after another instead"
    )
    ap.add_argument("--call-seconds", type=float, default=0.5, help="talking time of each sequential call")
    ap.add_argument(
        "--signed-urls",
        action="store_true",
        help="private agent: the agent fetches a signed URL per call (watch voicebridge_log_redactions)",
    )
    ap.add_argument("--attach", metavar="WS_URL", help="use a running stack's edge (Media Streams URL)")
    ap.add_argument("--metrics", action="append", default=[], metavar="SERVICE=URL", help="with --attach")
    ap.add_argument(
        "--pid", action="append", default=[], metavar="SERVICE=PID", help="with --attach: CPU/RSS"
    )
    ap.add_argument("--tls", action="store_true", help="mutual TLS on the gRPC hops (development certs)")
    ap.add_argument("--workdir", help="where service logs go (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--slo-cpu-ms-per-call-s", type=float, help="max CPU ms per call-second, 3 services")
    ap.add_argument("--slo-p99-added-ms", type=float, help="max p99 added latency, each way")
    ap.add_argument("--slo-gaps", type=int, help="max playback gaps over 40 ms")
    ap.add_argument("--slo-lost", type=float, help="max lost frames each way")
    ap.add_argument(
        "--slo-worst-gap-ms", type=float, help="max spacing of agent frames inside an utterance, as heard"
    )
    ap.add_argument(
        "--slo-rss-growth-mib", type=float, help="--sequential: max RSS growth of any service after warm-up"
    )
    ap.add_argument(
        "--slo-teardown-ms",
        type=float,
        help="--sequential: max p99 hang-up -> every service idle (none left)",
    )
    return ap.parse_args(argv)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    args.machine = machine()
    speech = speech_like()
    emulator: EmulatorProcess | None = None
    stack: StackInfo
    if args.attach:
        metrics = _parse_kv(args.metrics)
        stack = StackInfo(args.attach, metrics, {k: int(v) for k, v in _parse_kv(args.pid).items()})
    else:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="voicebridge-load-"))
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        emulator = EmulatorProcess(requires_auth=args.signed_urls)
        await asyncio.to_thread(emulator.start)
        stack = await asyncio.to_thread(
            start_services, workdir, emulator.base_url, args.tls, None, args.signed_urls
        )
    totals = None
    try:
        run = await (
            _sequential(stack, args, speech) if args.sequential else _concurrent(stack, args, speech)
        )
    finally:
        if not args.attach:
            # Measure peak RSS before stopping anything.
            peak = peak_rss_bytes(stack.pids)
            await asyncio.to_thread(stack.stop)
            assert emulator is not None
            totals = await asyncio.to_thread(emulator.stop)
    out = report(run, args, stack, totals)
    if not args.attach:
        out["peak_rss_mib"] = {n: _mib(v) for n, v in peak.items()}
    return out


def _text(out: dict[str, Any]) -> str:
    lat, lost = out["added_latency"], out["lost_frames"]
    lines = [
        f"{out['calls']} {out['mode']} calls ({out['failed_calls']} failed) on {out['machine']['cpus']} CPUs "
        f"({out['machine']['cpu_model']}); gRPC hops: {'mTLS' if out.get('grpc_tls') else 'plaintext'}",
        f"added latency inbound  p50 {lat['inbound_caller_to_elevenlabs']['p50_ms']} ms "
        f"p99 {lat['inbound_caller_to_elevenlabs']['p99_ms']} ms",
        f"added latency outbound p50 {lat['outbound_elevenlabs_to_caller']['p50_ms']} ms "
        f"p99 {lat['outbound_elevenlabs_to_caller']['p99_ms']} ms",
        f"heard turn latency (media) p50 {out['heard_turn_latency']['media_histogram']['p50_ms']} ms "
        f"p99 {out['heard_turn_latency']['media_histogram']['p99_ms']} ms",
        f"playback gaps >40 ms: {out['playback_gaps']['over_40ms']}; "
        f"lost frames in/out: {lost['caller_to_elevenlabs']}/{lost['elevenlabs_to_caller']}",
        f"CPU ms per call-second: {out['cpu_ms_per_call_second']}",
        f"gRPC messages per call-second (sent + received): {out.get('grpc_wire_messages_per_call_second')}",
        f"event-loop lag p99 ms: {out.get('event_loop_lag_p99_ms')}",
        f"peak RSS MiB: {out['peak_rss_mib']}",
        *(
            [f"RSS growth after warm-up MiB: {out['rss_growth_after_warmup_mib']}"]
            if "rss_growth_after_warmup_mib" in out
            else []
        ),
        *([f"teardown (hang-up -> all idle): {out['teardown_ms']}"] if "teardown_ms" in out else []),
        f"agent log redaction set (first/last/max): {out.get('agent_log_redactions')}",
        f"SLOs met: {out['slo']['met']} {out['slo']['checks']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.attach and shutil.which("voicebridge-edge", path=str(Path(sys.executable).parent)) is None:
        print("voicebridge-edge is not installed next to this Python; use --attach", file=sys.stderr)
        return 2
    out = uvloop.run(_main(args))
    print(json.dumps(out, indent=2) if args.json else _text(out))
    return 0 if out["slo"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
