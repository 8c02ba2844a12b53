"""Start the voicebridge services as real processes on loopback, and stop them cleanly.

Each service runs from its console script with a private environment and a log file, exactly as
an operator would run it; readiness is the service's own health check, not a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from voicebridge.runtime.config import Env
from voicebridge.runtime.grpc_tls import GrpcTls
from voicebridge.runtime.healthcheck import check as grpc_health_check

BIN = Path(sys.executable).parent


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port this process has not handed out before: the kernel may give the port it
    just released to the next bind(0), and two services of one test told the same port is a flake."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("VOICEBRIDGE_ENV_FILE", None)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.log_path.parent
        )

    def wait_until(self, ready, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout_s}s:\n{self.log()}")

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, as docker stop does; returns the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            with contextlib.suppress(Exception):
                self._log.close()

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")[-20000:]
        return ""


def grpc_ready(target: str, tls_env: dict[str, str] | None = None):
    """Health-checks `target`; with `tls_env` (GRPC_TLS_*) as that service's own mTLS identity."""
    tls = GrpcTls.from_env(Env(tls_env)) if tls_env else None
    return lambda: grpc_health_check(target, timeout_s=0.5, tls=tls)


def http_ready(url: str):
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=0.5) as reply:  # noqa: S310 - loopback
                return reply.status == 200
        except OSError:
            return False

    return ready
