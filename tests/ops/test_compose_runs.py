"""`docker compose up` runs as written: with no .env (development) and with a production .env.

There is no Docker engine here, so the test renders docker-compose.yml with compose's own
`config --format json` and starts each service as a real process with the command, environment
(the image's ENV from its Dockerfile, then compose's environment with .env merged in) and healthcheck
that compose gives its container, in dependency order, requiring each healthcheck to pass.
What a container has and a process on this machine does not is mapped, and only that:
- the service hostnames (agent, media) and the in-container 0.0.0.0 become 127.0.0.1 (except in
  EDGE_PUBLISHED_ON, which only declares where the host publishes the edge: it is kept as rendered);
- each container port (8000, 9101-9103, 50051-50052) becomes a free loopback port;
- the certificate volume /certs becomes a temporary directory, and the one-shot `certs` service's
  `--owner 10001:10001` becomes this user (a non-root process cannot give files away);
- `python` in a healthcheck is this venv's interpreter, and the console scripts come from its bin/.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._tools import ROOT, compose_binary, run

pytestmark = pytest.mark.e2e

CONTAINER_PORTS = ("50051", "50052", "8000", "9101", "9102", "9103")
ORDER = ("certs", "agent", "media", "edge")
BIN = Path(sys.executable).parent
PRODUCTION_ENV = {
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
    "PUBLIC_BASE_URL": "https://voice.example.com",
    "EDGE_API_TOKEN": "api-token-0123456789abcdef",
    "EDGE_STREAM_TOKEN_SECRET": "stream-secret-0123456789abcdef",
    "ELEVENLABS_AGENT_ID": "agent_0123",
    "ELEVENLABS_API_KEY": "sk_0123456789abcdef",
}


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports: every socket is held until all are chosen, so the kernel cannot
    hand the same port out twice (two services bound to one port was a CI failure)."""
    import contextlib
    import socket

    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def render(project: Path, dotenv: dict[str, str] | None) -> dict:
    """compose's own model of docker-compose.yml, in a project directory with (or without) a .env."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "docker-compose.yml").write_text((ROOT / "docker-compose.yml").read_text())
    if dotenv is not None:
        (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    file = ["-f", str(project / "docker-compose.yml"), "--project-directory", str(project)]
    result = run([compose_binary(), *file, "config", "--format", "json"], cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def image_env(dockerfile: Path) -> dict[str, str]:
    """The final stage's ENV (PATH aside: the venv's bin/ plays /opt/venv/bin)."""
    stages = dockerfile.read_text().replace("\\\n", " ").split("\nFROM ")
    env: dict[str, str] = {}
    for line in stages[-1].splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                name, _, value = item.partition("=")
                if name != "PATH":
                    env[name] = value
    return env


@dataclass
class Localizer:
    """Container addresses -> loopback, container ports -> free ports, /certs -> a directory."""

    certs: Path
    ports: dict[str, str]

    def __call__(self, value: str, keep_host: bool = False) -> str:
        value = value.replace("/certs", str(self.certs))
        value = re.sub(r"\b(agent|media|edge):(\d+)", r"127.0.0.1:\2", value)
        if not keep_host:
            value = value.replace("0.0.0.0", "127.0.0.1")
        pattern = r"(?<![\d.])(" + "|".join(CONTAINER_PORTS) + r")(?!\d)"
        return re.sub(pattern, lambda m: self.ports[m.group(1)], value)


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None
    log: Path
    proc: subprocess.Popen | None = None

    def start(self, cwd: Path) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_healthy(self, timeout_s: float = 60) -> None:
        assert self.healthcheck is not None
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None
            assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}:\n{self.text()}"
            if (
                subprocess.run(self.healthcheck, env=self.env, capture_output=True, timeout=30).returncode
                == 0
            ):
                return
            assert time.monotonic() < deadline, f"{self.name} never healthy:\n{self.text()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def services_from(model: dict, workdir: Path) -> dict[str, Service]:
    certs = workdir / "certs"
    ports = free_ports(len(CONTAINER_PORTS))
    localize = Localizer(certs, {c: str(p) for c, p in zip(CONTAINER_PORTS, ports, strict=True)})
    out: dict[str, Service] = {}
    for name in ORDER:
        svc = model["services"][name]
        dockerfile = ROOT / svc["build"]["dockerfile"]
        env = {**image_env(dockerfile), **(svc.get("environment") or {})}
        env = {k: localize(str(v), keep_host=k == "EDGE_PUBLISHED_ON") for k, v in env.items()}
        env["PATH"] = f"{BIN}{os.pathsep}/usr/bin:/bin"
        argv = [localize(a) for a in svc["command"]]
        argv = [str(BIN / argv[0]), *argv[1:]]
        if "--owner" in argv:
            argv[argv.index("--owner") + 1] = f"{os.getuid()}:{os.getgid()}"
        check = svc.get("healthcheck", {}).get("test")
        if check:
            assert check[0] == "CMD"
            check = [localize(a) for a in check[1:]]
            check[0] = sys.executable if check[0] == "python" else check[0]
        out[name] = Service(name, argv, env, check, workdir / f"{name}.log")
    return out


@pytest.fixture
def up(tmp_path: Path) -> Iterator:
    """`up(model)`: the services started in order, each healthy; stopped at the end of the test."""
    started: list[Service] = []

    def start(model: dict, until: str = "edge") -> dict[str, Service]:
        services = services_from(model, tmp_path)
        cwd = tmp_path / "cwd"  # no .env here: the process sees only what compose gives it
        cwd.mkdir(exist_ok=True)
        certs = services["certs"]
        certs.start(cwd)
        assert certs.proc is not None
        assert certs.proc.wait(timeout=60) == 0, certs.text()
        for name in ORDER[1 : ORDER.index(until) + 1]:
            services[name].start(cwd)
            started.append(services[name])
            services[name].wait_healthy()
        return services

    yield start
    for svc in reversed(started):
        svc.stop()


async def test_no_env_is_local_development_healthy_with_a_working_call(up, tmp_path: Path) -> None:
    from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

    model = render(tmp_path / "project", None)
    (published,) = model["services"]["edge"]["ports"]
    assert published["host_ip"] == "127.0.0.1"  # the host's loopback only
    services = up(model)
    edge = services["edge"]
    port = edge.env["EDGE_PORT"]
    async with TwilioCaller(CallerConfig(url=f"ws://127.0.0.1:{port}/twilio/media")) as call:
        await call.wait_heard(1.0, timeout=15)  # the parrot's greeting, through media and agent
        summary = call.summary()
    assert summary["violations"] == []
    assert edge.text().count("local development mode") == 1
    assert "AGENT_BACKEND" not in services["agent"].env  # parrot: no ElevenLabs agent configured
    for name in ("agent", "media"):
        assert "(mTLS;" in services[name].text()


async def test_production_env_is_healthy_under_mtls_and_serves_a_signed_call(up, tmp_path: Path) -> None:
    """Production .env (Twilio and ElevenLabs settings; ElevenLabs played by the ConvAI emulator, the
    only setting pointed at a local peer): signature checks on, mTLS on both hops, and a call Twilio
    would make (signed webhook, then the signed stream with its token) reaches the agent and back."""
    import httpx
    from twilio.request_validator import RequestValidator

    from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator
    from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller, stream_from_twiml

    emulator = ConvAIEmulator(host="127.0.0.1", port=0)
    agent_id = PRODUCTION_ENV["ELEVENLABS_AGENT_ID"]
    emulator.add_agent(agent_id, AgentScript(input_format="ulaw_8000", output_format="ulaw_8000"))
    await emulator.start()
    try:
        model = render(tmp_path / "project", {**PRODUCTION_ENV, "ELEVENLABS_BASE_URL": emulator.base_url})
        services = up(model)
        edge = services["edge"]
        assert "local development" not in edge.text()
        assert "media at 127.0.0.1" in edge.text()
        assert "(mTLS)" in edge.text()
        for name in ("agent", "media"):
            assert "(mTLS;" in services[name].text()

        public, token = PRODUCTION_ENV["PUBLIC_BASE_URL"], PRODUCTION_ENV["TWILIO_AUTH_TOKEN"]
        caller = CallerConfig(url="", account_sid=PRODUCTION_ENV["TWILIO_ACCOUNT_SID"])
        form = caller.voice_webhook_form()
        signature = RequestValidator(token).compute_signature(f"{public}/twilio/voice", form)
        base = f"http://127.0.0.1:{edge.env['EDGE_PORT']}"
        async with httpx.AsyncClient(base_url=base) as client:
            reply = await client.post("/twilio/voice", data=form, headers={"X-Twilio-Signature": signature})
            unsigned = await client.post("/twilio/voice", data=form)
        assert reply.status_code == 200, reply.text
        assert unsigned.status_code == 403  # production: signatures are checked
        stream_url, params = stream_from_twiml(reply.text)
        dial = CallerConfig(
            url=f"ws://127.0.0.1:{edge.env['EDGE_PORT']}/twilio/media",
            signature_url=stream_url,
            auth_token=token,
            account_sid=caller.account_sid,
            call_sid=caller.call_sid,
            custom_parameters=params,
        )
        async with TwilioCaller(dial) as call:
            await call.wait_heard(0.25, timeout=15)  # the emulator's two greeting beeps (0.3 s of tone)
            summary = call.summary()
        assert summary["violations"] == []
        assert emulator.signed_url_requests  # the agent used the API key for a signed URL
    finally:
        await emulator.stop()


@pytest.mark.parametrize(
    "dotenv",
    [{"EDGE_PUBLISH": "0.0.0.0:8000"}, {"PUBLIC_BASE_URL": "https://voice.example.com"}],
    ids=["published-everywhere", "public-url"],
)
def test_public_edge_without_twilio_token_refuses_with_one_line(up, tmp_path: Path, dotenv) -> None:
    model = render(tmp_path / "project", dotenv)
    edge = up(model, until="media")["edge"]
    edge.start(tmp_path)
    assert edge.proc is not None
    assert edge.proc.wait(timeout=60) != 0
    lines = [ln for ln in edge.text().splitlines() if ln.strip()]
    assert len(lines) == 1, edge.text()
    assert "set TWILIO_AUTH_TOKEN" in lines[0]
