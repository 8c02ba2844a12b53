"""Many replicas of each service as real processes on loopback, the way Kubernetes would run them.

Each replica listens on an address of its own (127.0.0.11, 127.0.0.12, ... : loopback is a /8) with
its metrics beside it, on ports the kernel picked free: never a fixed port, because another stack on
the same machine (a parallel test run, a benchmark) would take a killed replica's address while this
stack's name still lists it, and this stack's calls would land on that stranger.

The edges find media, and media finds the agents, through a *name* this stack controls: an endpoints
file per service (`file://` targets, runtime/resolvers.py) that lists the replicas currently
"ready", written atomically as a headless Service's DNS answer would change.
Callers are spread over the ready edges by whoever drives the stack (an Ingress's job).

Used by the rolling-restart command (rolling.py) and by the multi-replica tests.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from voicebridge.runtime.healthcheck import check as grpc_health_check

BIN = Path(sys.executable).parent
SERVICES = ("edge", "media", "agent")


def _free_ports(host: str, count: int) -> list[int]:
    """`count` distinct ports free on `host` now, picked by the kernel (all held until all are known)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]


def _set_nice(pid: int, value: int) -> None:
    """Set the CPU priority of every thread of `pid` (restoring 0 needs CAP_SYS_NICE: root here)."""
    for thread in psutil.Process(pid).threads():
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, thread.id, value)


@dataclass(eq=False)
class Replica:
    """One service process: `service` ("edge", "media", "agent") named like a pod (`media-2`)."""

    service: str
    name: str
    host: str
    port: int
    metrics_port: int
    log_path: Path
    proc: subprocess.Popen
    _log: object = field(repr=False, default=None)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}/twilio/media"

    def ready(self) -> bool:
        if self.service == "edge":
            try:
                with urllib.request.urlopen(f"http://{self.address}/readyz", timeout=0.5) as reply:
                    return reply.status == 200
            except (OSError, urllib.error.HTTPError):
                return False
        return grpc_health_check(self.address, timeout_s=0.5)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM, as the kubelet sends after preStop: the replica drains, then exits."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the replica vanishes (a crashed or evicted pod)."""
        if self.alive():
            self.proc.kill()

    def wait(self, timeout_s: float) -> int | None:
        """Exit code, or None if still running after `timeout_s` (a failure detector)."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            self._log.close()  # type: ignore[attr-defined]


def loopback_hosts() -> Iterator[str]:
    """127.0.0.11, 127.0.0.12, ... 127.0.0.254, then 127.0.1.11 ...: a fresh loopback address per replica
    however many a long run starts (loopback is a /8; .0-.10 and .255 of each /24 are left alone)."""
    for third in itertools.count(0):
        for last in range(11, 255):
            yield f"127.0.{third}.{last}"


class ReplicaStack:
    """Replicas of edge, media and agent; `env[service]` adds settings to every replica of it."""

    def __init__(self, workdir: Path, env: dict[str, dict[str, str]] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {s: dict((env or {}).get(s, {})) for s in SERVICES}
        self.replicas: list[Replica] = []  # every replica started, in order (stopped ones too)
        self.listed: dict[str, list[Replica]] = {"media": [], "agent": []}
        self._hosts = loopback_hosts()
        self._numbers = {s: itertools.count(1) for s in SERVICES}
        for service in self.listed:
            self.publish(service)

    def endpoints(self, service: str) -> Path:
        return self.workdir / f"{service}.endpoints"

    def target(self, service: str) -> str:
        return f"file://{self.endpoints(service)}"

    def publish(self, service: str) -> None:
        """Write the name's current answer (atomically: a reader sees the old or the new set)."""
        path = self.endpoints(service)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{r.address}  # {r.name}\n" for r in self.listed[service]))
        tmp.replace(path)

    def list_in_name(self, replica: Replica) -> None:
        if replica not in self.listed[replica.service]:
            self.listed[replica.service].append(replica)
            self.publish(replica.service)

    def unlist(self, replica: Replica) -> None:
        if replica in self.listed.get(replica.service, []):
            self.listed[replica.service].remove(replica)
            self.publish(replica.service)

    def running(self, service: str) -> builtins.list[Replica]:  # `list` is a method here
        return [r for r in self.replicas if r.service == service and r.alive()]

    def start(
        self,
        service: str,
        ready_timeout_s: float = 30.0,
        listed: bool = True,
        startup_nice: int = 0,
        **env: str,
    ) -> Replica:
        """A new replica of `service` on an address of its own, ready (and listed in its name).

        `startup_nice` > 0 starts it at that lower CPU priority and restores normal priority once it is
        ready: on one small machine, a starting process (imports, a second of CPU) then does not take
        the CPU of the replicas serving calls, as a new pod with its own CPU request would not."""
        host = next(self._hosts)
        port, metrics_port = _free_ports(host, 2)
        name = f"{service}-{next(self._numbers[service])}"
        settings = {
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "METRICS_HOST": host,
            "REPLICA_RESOLVE_INTERVAL_S": "0.2",
            **self._own_env(service, host, port, metrics_port),
            **self.env[service],
            **env,
        }
        full_env = {**os.environ, **settings}
        full_env.pop("VOICEBRIDGE_ENV_FILE", None)
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own console scripts
            [str(BIN / f"voicebridge-{service}")],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        replica = Replica(service, name, host, port, metrics_port, log_path, proc, log)
        self.replicas.append(replica)
        if startup_nice:
            _set_nice(proc.pid, startup_nice)
        deadline = time.monotonic() + ready_timeout_s
        while not replica.ready():
            if not replica.alive() or time.monotonic() > deadline:
                replica.close()
                raise RuntimeError(f"{name} did not become ready:\n{replica.log()[-4000:]}")
            time.sleep(0.1)
        if startup_nice:
            _set_nice(proc.pid, 0)  # every thread: Linux keeps a priority per thread
        if listed and service in self.listed:
            self.list_in_name(replica)
        return replica

    def _own_env(self, service: str, host: str, port: int, metrics_port: int) -> dict[str, str]:
        if service == "agent":
            return {"AGENT_LISTEN": f"{host}:{port}", "AGENT_METRICS_PORT": str(metrics_port)}
        if service == "media":
            return {
                "MEDIA_LISTEN": f"{host}:{port}",
                "MEDIA_METRICS_PORT": str(metrics_port),
                "AGENT_TARGET": self.target("agent"),
            }
        return {
            "EDGE_HOST": host,
            "EDGE_PORT": str(port),
            "EDGE_METRICS_PORT": str(metrics_port),
            "MEDIA_TARGET": self.target("media"),
            "PUBLIC_BASE_URL": f"http://{host}:{port}",
            "TWILIO_VALIDATE_SIGNATURES": "false",
        }

    def stop(self) -> dict[str, int | None]:
        """SIGTERM everything still running (edges first), wait, kill what does not exit."""
        codes: dict[str, int | None] = {}
        for service in ("edge", "media", "agent"):
            group = self.running(service)
            for replica in group:
                replica.terminate()
            for replica in group:
                codes[replica.name] = replica.wait(60.0)
        for replica in self.replicas:
            replica.close()
        return codes


def count_in_log(replica: Replica, text: str) -> int:
    """How many times `text` appears in the replica's log (e.g. calls it started)."""
    return replica.log().count(text)


CALL_STARTED = {"edge": "media stream started", "media": "call started (stream", "agent": "session ready"}
