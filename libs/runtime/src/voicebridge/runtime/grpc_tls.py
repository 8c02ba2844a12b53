"""Mutual TLS on the internal gRPC hops (edge -> media -> agent), with grpc's own credentials.

Whoever reaches the agent's port could otherwise open ElevenLabs conversations on the owner's account,
bypassing every Twilio check the edge makes. So a gRPC listener or channel is plaintext only when it
is on loopback, or when GRPC_INSECURE=true says a service mesh already provides mTLS; anything else
needs GRPC_TLS_CA, GRPC_TLS_CERT and GRPC_TLS_KEY (PEM files; `voicebridge-dev-certs` makes a set).
A server then requires a client certificate signed by that CA; a client checks the server's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .config import ConfigError, Env

TLS_VARS = ("GRPC_TLS_CA", "GRPC_TLS_CERT", "GRPC_TLS_KEY")
_FIX = (
    "set GRPC_TLS_CA, GRPC_TLS_CERT and GRPC_TLS_KEY (voicebridge-dev-certs makes them), "
    "or GRPC_INSECURE=true behind a service mesh that provides mTLS"
)


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (brackets allowed)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(address: str) -> str:
    """The host part of host:port ("[::1]:50051" -> "::1"; a bare ":50051" means every interface)."""
    host, _, _port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0"  # noqa: S104 - what grpc makes of an empty host


@dataclass(frozen=True)
class GrpcTls:
    """This process's gRPC identity: CA, certificate and key as PEM bytes, or None for plaintext."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    insecure: bool = False  # GRPC_INSECURE: plaintext anywhere, the mesh secures the hop

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    @classmethod
    def from_env(cls, env: Env | None = None) -> GrpcTls:
        env = env or Env()
        insecure = env.boolean("GRPC_INSECURE", False)
        paths = {name: env.optional(name) for name in TLS_VARS}
        given = [name for name, path in paths.items() if path]
        if not given:
            return cls(insecure=insecure)
        if insecure:
            raise ConfigError(f"GRPC_INSECURE=true contradicts {', '.join(given)}: choose one")
        if len(given) != len(TLS_VARS):
            missing = sorted(set(TLS_VARS) - set(given))
            raise ConfigError(f"{', '.join(given)} set but {', '.join(missing)} missing: set all three")
        pem: dict[str, bytes] = {}
        for name, path in paths.items():
            try:
                pem[name] = Path(str(path)).read_bytes()
            except OSError as exc:
                raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
        return cls(ca=pem["GRPC_TLS_CA"], cert=pem["GRPC_TLS_CERT"], key=pem["GRPC_TLS_KEY"])

    def checked(self, listen: str | None = None, targets: tuple[str, ...] = ()) -> GrpcTls:
        """Self, once every address this process serves or calls is allowed by the rule above."""
        if listen:
            self.check_plaintext("listener on", listen)
        for target in targets:
            self.check_plaintext("channel to", target)
        return self

    def check_plaintext(self, role: str, address: str) -> None:
        """Refuse a plaintext listener/target off loopback unless GRPC_INSECURE=true."""
        if self.enabled or self.insecure or is_loopback_host(host_of(address)):
            return
        raise ConfigError(f"refusing plaintext gRPC {role} {address} (not loopback): {_FIX}")

    def add_port(self, server: grpc.aio.Server, listen: str) -> int:
        """Listen on `listen`: mTLS (client certificate required) when configured, else plaintext."""
        if not self.enabled:
            self.check_plaintext("listener on", listen)
            return server.add_insecure_port(listen)
        assert self.key is not None
        assert self.cert is not None
        credentials = grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )
        return server.add_secure_port(listen, credentials)

    def aio_channel(self, target: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        if not self.enabled:
            self.check_plaintext("channel to", target)
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self._channel_credentials(), options=options)

    def channel(self, target: str) -> grpc.Channel:
        """A blocking channel (health checks)."""
        if not self.enabled:
            self.check_plaintext("channel to", target)
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, self._channel_credentials())

    def _channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )
