"""GRPC_TLS_* / GRPC_INSECURE settings (runtime/grpc_tls.py) and the development certificates."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from voicebridge.runtime.config import ConfigError, Env
from voicebridge.runtime.dev_certs import SERVICES, main, write_dev_certs
from voicebridge.runtime.grpc_tls import GrpcTls, host_of, is_loopback_host


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    write_dev_certs(out)
    return out


def tls_vars(certs: Path, service: str = "media") -> dict[str, str]:
    return {
        "GRPC_TLS_CA": str(certs / "ca.pem"),
        "GRPC_TLS_CERT": str(certs / f"{service}.pem"),
        "GRPC_TLS_KEY": str(certs / f"{service}-key.pem"),
    }


@pytest.mark.parametrize(
    ("address", "host", "loopback"),
    [
        ("127.0.0.1:50051", "127.0.0.1", True),
        ("127.8.9.1:1", "127.8.9.1", True),
        ("[::1]:50051", "::1", True),
        ("localhost:1", "localhost", True),
        ("0.0.0.0:50051", "0.0.0.0", False),
        (":50051", "0.0.0.0", False),  # grpc: every interface
        ("[::]:50051", "::", False),
        ("agent:50052", "agent", False),
        ("10.0.0.7:50052", "10.0.0.7", False),
    ],
)
def test_loopback_is_told_apart_from_everything_else(address: str, host: str, loopback: bool) -> None:
    assert host_of(address) == host
    assert is_loopback_host(host) is loopback


def test_nothing_set_is_plaintext_allowed_on_loopback_only() -> None:
    tls = GrpcTls.from_env(Env({}))
    assert not tls.enabled
    tls.checked("127.0.0.1:50051", ("127.0.0.1:50052",))
    with pytest.raises(ConfigError, match=re.escape("refusing plaintext gRPC listener on 0.0.0.0:50051")):
        tls.checked("0.0.0.0:50051")
    with pytest.raises(ConfigError, match="channel to agent:50052"):
        tls.checked(targets=("agent:50052",))


def test_the_three_files_enable_mtls_anywhere(certs: Path) -> None:
    tls = GrpcTls.from_env(Env(tls_vars(certs))).checked("0.0.0.0:50051", ("agent:50052",))
    assert tls.enabled
    assert tls.ca == (certs / "ca.pem").read_bytes()


@pytest.mark.parametrize(
    ("drop", "extra", "says"),
    [
        ("GRPC_TLS_KEY", {}, "GRPC_TLS_KEY missing"),
        ("", {"GRPC_INSECURE": "true"}, "contradicts"),
        ("", {"GRPC_TLS_CA": "/nonexistent/ca.pem"}, "GRPC_TLS_CA: cannot read /nonexistent/ca.pem"),
    ],
    ids=["partial", "insecure-and-files", "unreadable"],
)
def test_inconsistent_settings_stop_at_start_up(
    certs: Path, drop: str, extra: dict[str, str], says: str
) -> None:
    env = {k: v for k, v in tls_vars(certs).items() if k != drop} | extra
    with pytest.raises(ConfigError, match=re.escape(says)):
        GrpcTls.from_env(Env(env))


def test_dev_certificates_name_every_service_for_server_and_client_use(certs: Path) -> None:
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    for service in SERVICES:
        cert = x509.load_pem_x509_certificate((certs / f"{service}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {service, "localhost"} <= set(names.get_values_for_type(x509.DNSName))
        assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
        assert (certs / f"{service}-key.pem").stat().st_mode & 0o077 == 0  # the key is its owner's only
    assert not list(certs.glob("ca-key*"))  # nothing else can be signed later


def test_if_missing_keeps_an_existing_set(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    before = (tmp_path / "ca.pem").read_bytes()
    assert main(["--out", str(tmp_path), "--if-missing"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() == before
    assert main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "ca.pem").read_bytes() != before
