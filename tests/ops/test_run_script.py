"""scripts/run (the quick start) brings agent, media and edge up healthy, listening on loopback only;
SIGTERM leaves no process behind."""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from ._tools import ROOT, SERVICES, run

pytestmark = pytest.mark.e2e

MISSING = [s for s in SERVICES if importlib.util.find_spec(f"voicebridge.{s}.__main__") is None]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 and ::1, also as an IPv4-mapped IPv6 address (how grpc reports an IPv4 bind)."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@pytest.mark.parametrize("script", ["scripts/run", "scripts/test", "scripts/lib/bootstrap.sh", ".ci/run"])
def test_shell_syntax(script):
    result = run(["bash", "-n", str(ROOT / script)])
    assert result.returncode == 0, result.stderr


def test_ci_run_only_calls_scripts_test():
    text = (ROOT / ".ci/run").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1
    assert lines[0].startswith("exec ")
    assert "scripts/test" in lines[0]


@pytest.mark.skipif(bool(MISSING), reason=f"no __main__ yet for: {', '.join(MISSING)}")
def test_run_starts_all_three_and_stops_cleanly(tmp_path):
    psutil = pytest.importorskip("psutil")
    edge, edge_metrics, media, media_metrics, agent, agent_metrics = free_ports(6)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "ELEVENLABS_", "AGENT_", "EDGE_"))
    }
    env = {k: v for k, v in env.items() if not k.startswith(("MEDIA_", "METRICS_", "GRPC_"))}
    env.update(
        VB_VENV=sys.prefix,
        VB_RUN_DIR=str(tmp_path),
        VOICEBRIDGE_ENV_FILE=str(tmp_path / "no.env"),  # a developer's .env must not leak in
        # Free ports; the edge and metrics hosts are scripts/run's defaults.
        EDGE_PORT=str(edge),
        EDGE_METRICS_PORT=str(edge_metrics),
        MEDIA_LISTEN=f"127.0.0.1:{media}",
        MEDIA_METRICS_PORT=str(media_metrics),
        AGENT_LISTEN=f"127.0.0.1:{agent}",
        AGENT_METRICS_PORT=str(agent_metrics),
    )
    proc = subprocess.Popen(
        [str(ROOT / "scripts/run")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    output: list[str] = []
    children = []
    try:
        deadline = time.monotonic() + 150
        while not any("Press Ctrl-C" in ln for ln in output):
            assert proc.poll() is None, "scripts/run exited early:\n" + "".join(output)
            assert time.monotonic() < deadline, "services not healthy in time:\n" + "".join(output)
            with contextlib.suppress(queue.Empty):
                output.append(lines.get(timeout=1))
        text = "".join(output)
        assert "TWILIO_VALIDATE_SIGNATURES=false" in text
        assert "agent backend:        parrot" in text
        assert f"ws://127.0.0.1:{edge}/twilio/media" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{edge}/healthz", timeout=5) as reply:
            assert reply.status == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        names, listening = [], set()
        for child in children:
            try:  # scripts/run also runs short-lived helpers (health probes): they may be gone by now
                names.append(" ".join(child.cmdline()))
                sockets = child.net_connections(kind="inet")
            except psutil.NoSuchProcess:
                continue
            listening |= {(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN}
        for service in SERVICES:
            assert f"voicebridge-{service}" in " ".join(names)
        ports = {port for _ip, port in listening}
        assert {edge, edge_metrics, media, media_metrics, agent, agent_metrics} <= ports, listening
        assert all(is_loopback(ip) for ip, _port in listening), listening
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert rc == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"orphans left behind: {alive}"
    for service in SERVICES:
        assert (tmp_path / f"{service}.log").exists()
