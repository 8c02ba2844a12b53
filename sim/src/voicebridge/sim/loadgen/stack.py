"""The three services started from their console scripts on loopback, against the emulator (or the
URLs of a running stack, `--attach`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
