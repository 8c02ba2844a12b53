"""Mutual TLS on both internal hops (edge -> media -> agent), with real processes and dev certificates.

Only a client holding a certificate from the stack's CA is served: no certificate, plaintext, or a
certificate from another CA are all refused by media and by the agent. A whole call works under mTLS.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness.audio import espeak_ulaw
from harness.processes import BIN
from harness.stack import Stack, start_stack, tls_env

from voicebridge.runtime.config import Env
from voicebridge.runtime.dev_certs import write_dev_certs
from voicebridge.runtime.grpc_tls import GrpcTls
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    write_dev_certs(out)
    return out


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("other-ca")
    write_dev_certs(out)
    return out


@pytest.fixture(scope="module")
def mtls_stack(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("mtls-stack"), {"AGENT_BACKEND": "parrot"}, certs=certs)
    yield stack
    stack.stop()


def _target(stack: Stack, service: str) -> str:
    proc = stack.media if service == "media" else stack.agent
    assert proc is not None
    return proc.env["MEDIA_LISTEN" if service == "media" else "AGENT_LISTEN"]


def _check(channel: grpc.Channel) -> str:
    """SERVING, or the gRPC status code name of the refusal."""
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


@pytest.mark.parametrize("service", ["media", "agent"])
def test_only_a_client_with_a_certificate_from_the_stacks_ca_is_served(
    mtls_stack: Stack, certs: Path, other_ca: Path, service: str
) -> None:
    target = _target(mtls_stack, service)
    ca_only = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    # A client certificate signed by another CA (the client trusts the right server CA, so only the
    # server's refusal of the client certificate can fail the call).
    foreign = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(other_ca / "edge-key.pem").read_bytes(),
        certificate_chain=(other_ca / "edge.pem").read_bytes(),
    )
    right = GrpcTls.from_env(Env(tls_env(certs, "edge" if service == "media" else "media")))

    assert _check(grpc.insecure_channel(target)) == "UNAVAILABLE"
    assert _check(grpc.secure_channel(target, ca_only)) == "UNAVAILABLE"
    assert _check(grpc.secure_channel(target, foreign)) == "UNAVAILABLE"
    assert _check(right.channel(target)) == "SERVING"


async def test_a_call_works_under_mtls(mtls_stack: Stack) -> None:
    speech = espeak_ulaw("Testing one two three")
    async with TwilioCaller(CallerConfig(url=mtls_stack.media_ws_url)) as call:
        await call.wait_heard(1.0, timeout=10)  # the greeting crossed both mTLS hops
        await call.wait_agent_quiet(0.5, timeout=15)
        before = call.samples_heard()
        await call.speak(speech)
        await call.wait_heard((before + 0.5 * len(speech)) / 8000, timeout=20)  # the parrot's echo
        summary = call.summary()
    assert summary["violations"] == []
    assert "mTLS" in mtls_stack.media.log()
    assert "mTLS" in mtls_stack.edge.log()


@pytest.mark.parametrize(
    ("service", "env", "says"),
    [
        ("agent", {"AGENT_LISTEN": "0.0.0.0:1"}, "refusing plaintext gRPC listener on 0.0.0.0:1"),
        ("media", {"MEDIA_LISTEN": "127.0.0.1:1", "AGENT_TARGET": "agent:1"}, "channel to agent:1"),
        ("edge", {"MEDIA_TARGET": "media:1"}, "channel to media:1"),
    ],
)
def test_plaintext_off_loopback_refuses_to_start_with_one_line(
    tmp_path: Path, service: str, env: dict[str, str], says: str
) -> None:
    """The refusal comes from the settings, before any socket is opened."""
    result = subprocess.run(
        [str(BIN / f"voicebridge-{service}")],
        env={"PATH": str(Path(sys.executable).parent), "VOICEBRIDGE_ENV_FILE": str(tmp_path / "none"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    assert "GRPC_TLS_CERT" in lines[0]
    assert "GRPC_INSECURE=true" in lines[0]


def test_grpc_insecure_allows_plaintext_off_loopback_when_chosen() -> None:
    tls = GrpcTls.from_env(Env({"GRPC_INSECURE": "true"})).checked("0.0.0.0:50051", ("agent:50052",))
    assert not tls.enabled
