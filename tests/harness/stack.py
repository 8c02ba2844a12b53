"""The three services started together on loopback: agent, media, edge (in dependency order)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voicebridge.sim.loadgen.scrape import scrape_sum

from .polling import eventually
from .processes import BIN, ServiceProcess, free_port, grpc_ready, http_ready

# The gauge each service sets back down when it has ended a call (and closed what the call held).
CALLS_ACTIVE = {"edge": "edge_calls_active", "media": "media_calls_active", "agent": "agent_sessions_active"}
# A failure detector, not a deadline: ending a call takes milliseconds; this only bounds how long a
# test waits for a call that never ends before it says so.
IDLE_TIMEOUT_S = 30.0


def tls_env(certs: Path, service: str) -> dict[str, str]:
    """GRPC_TLS_* naming `service`'s files in a voicebridge-dev-certs directory."""
    return {
        "GRPC_TLS_CA": str(certs / "ca.pem"),
        "GRPC_TLS_CERT": str(certs / f"{service}.pem"),
        "GRPC_TLS_KEY": str(certs / f"{service}-key.pem"),
    }


def scrape_metric(url: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples (matching a label fragment) in the /metrics page at `url`."""
    return scrape_sum(url, name, labels, timeout_s=10)  # a failure detector: a loaded CI machine can be slow


@dataclass
class Stack:
    edge: ServiceProcess
    media: ServiceProcess
    agent: ServiceProcess | None  # None when the stack uses an agent server of the test's own
    edge_port: int
    metrics_ports: dict[str, int]
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict, repr=False)

    @property
    def media_ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.edge_port}/twilio/media"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"

    def metric(self, service: str, name: str, labels: str = "") -> float:
        """Sum of a metric's samples (matching a label fragment) in a service's /metrics."""
        return scrape_metric(self.metrics_url(service), name, labels)

    def calls_in_progress(self) -> dict[str, float]:
        """Each service's own count of calls it has not ended yet."""
        return {s: self.metric(s, g) for s, g in CALLS_ACTIVE.items() if s != "agent" or self.agent}

    def idle(self) -> bool:
        return not any(self.calls_in_progress().values())

    async def wait_idle(self, what: str, timeout_s: float = IDLE_TIMEOUT_S) -> None:
        """Until every service has ended every call it had: a shared stack is handed from one test to
        the next only once it is proven idle. On timeout, says which service still holds a call."""
        try:
            await eventually(self.idle, timeout_s, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; calls still in progress: {self.calls_in_progress()}") from None

    def stop(self) -> dict[str, int | None]:
        return {p.name: p.stop() for p in self._processes()}

    def restart(self) -> None:
        """Fresh processes on the same ports (and logs): a stack an earlier test left a call on is
        not handed to the next test."""
        for proc in reversed(self._processes()):  # edge first, as at shutdown
            proc.stop()
        for proc in self._processes():  # agent, media, edge: each ready before the next
            proc.start()
            proc.wait_until(self.readiness[proc.name])

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.log()}" for p in self._processes())

    def _processes(self) -> list[ServiceProcess]:
        return [p for p in (self.edge, self.media, self.agent) if p is not None]


def start_edge(stack: Stack, workdir: Path, name: str, **env: str) -> tuple[ServiceProcess, str]:
    """Another edge process in front of `stack`'s media, with the same settings as the stack's edge
    (a replica, or the same edge after a restart) except ports of its own (Twilio-facing and
    metrics) and `env`. Returns it and its Media Streams URL; the caller stops it."""
    port = free_port()
    settings = {**stack.edge.env, "EDGE_PORT": str(port), "EDGE_METRICS_PORT": str(free_port()), **env}
    edge = ServiceProcess(name, list(stack.edge.argv), settings, workdir / f"{name}.log")
    edge.start()
    try:
        edge.wait_until(http_ready(f"http://127.0.0.1:{port}/healthz"))
    except BaseException:
        edge.stop()
        raise
    return edge, f"ws://127.0.0.1:{port}/twilio/media"


def start_stack(
    workdir: Path,
    agent_env: dict[str, str],
    edge_env: dict[str, str] | None = None,
    *,
    agent_target: str | None = None,
    certs: Path | None = None,
) -> Stack:
    """Start agent, media and edge; with `agent_target` (host:port of the test's own agent server)
    no agent process is started and media talks to that server instead. With `certs` (a
    voicebridge-dev-certs directory) every hop is mutual TLS, each service with its own certificate."""
    workdir.mkdir(parents=True, exist_ok=True)
    agent_port, media_port, edge_port = free_port(), free_port(), free_port()
    metrics = {"agent": free_port(), "media": free_port(), "edge": free_port()}
    # SIGTERM goes straight to the drain deadline (a goodbye, then the hang-up): a stack stopped with a
    # call up stops in seconds. Drains that wait for calls to end: tests/e2e/test_many_replicas.py.
    common = {"LOG_LEVEL": "INFO", "DRAIN_DEADLINE_S": "0"}

    def tls(service: str) -> dict[str, str]:
        return tls_env(certs, service) if certs else {}

    agent = ServiceProcess(
        "agent",
        [str(BIN / "voicebridge-agent")],
        {
            **common,
            "AGENT_LISTEN": f"127.0.0.1:{agent_port}",
            "AGENT_METRICS_PORT": str(metrics["agent"]),
            **tls("agent"),
            **agent_env,
        },
        workdir / "agent.log",
    )
    media = ServiceProcess(
        "media",
        [str(BIN / "voicebridge-media")],
        {
            **common,
            "MEDIA_LISTEN": f"127.0.0.1:{media_port}",
            "MEDIA_METRICS_PORT": str(metrics["media"]),
            "AGENT_TARGET": agent_target or f"127.0.0.1:{agent_port}",
            **tls("media"),
        },
        workdir / "media.log",
    )
    edge = ServiceProcess(
        "edge",
        [str(BIN / "voicebridge-edge")],
        {
            **common,
            "EDGE_HOST": "127.0.0.1",
            "EDGE_PORT": str(edge_port),
            "EDGE_METRICS_PORT": str(metrics["edge"]),
            **tls("edge"),
            "MEDIA_TARGET": f"127.0.0.1:{media_port}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{edge_port}",
            "TWILIO_VALIDATE_SIGNATURES": "false",
            **(edge_env or {}),
        },
        workdir / "edge.log",
    )
    ready_env = {"agent": tls("agent"), "media": tls("media")}
    started: list[ServiceProcess] = []
    readiness = {
        "agent": grpc_ready(f"127.0.0.1:{agent_port}", ready_env["agent"]),
        "media": grpc_ready(f"127.0.0.1:{media_port}", ready_env["media"]),
        "edge": http_ready(f"http://127.0.0.1:{edge_port}/healthz"),
    }
    try:
        steps = [(agent, readiness["agent"]), (media, readiness["media"]), (edge, readiness["edge"])]
        for proc, ready in steps[1:] if agent_target else steps:
            proc.start()
            started.append(proc)
            proc.wait_until(ready)
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        raise
    return Stack(edge, media, None if agent_target else agent, edge_port, metrics, readiness)
