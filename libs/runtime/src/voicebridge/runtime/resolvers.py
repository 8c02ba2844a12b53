"""What a service name stands for: the addresses of its replicas right now.

A client that balances its own calls (runtime/replicas.py) asks its resolver again every few seconds
and after a replica fails. Three kinds, chosen by how the target is written:

- `dns:///media-headless.voice.svc.cluster.local:50051`: every address the name resolves to, through
  the event loop's getaddrinfo (a Kubernetes headless Service answers with one A record per ready pod);
- `file:///run/voicebridge/media.endpoints`: one `host:port` per line (`#` comments), read again each
  time: a name whose set a test, a script or a sidecar controls;
- `10.0.0.5:50051,10.0.0.6:50051`: a fixed list, also written as gRPC's own address list
  `ipv4:10.0.0.5:50051,10.0.0.6:50051` (or `ipv6:[::1]:1,[::2]:2`): the scheme is dropped, never
  read as part of the first host (https://github.com/grpc/grpc/blob/master/doc/naming.md).

A single `host:port` is no list at all: `resolver_for` returns None and the caller keeps today's one
channel (gRPC's own name resolution and reconnects).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .config import ConfigError


class Resolver(Protocol):
    """`resolve()` returns the current `host:port` addresses (may be empty); raises OSError when the
    name cannot be resolved right now (the caller keeps what it had)."""

    @property
    def description(self) -> str: ...  # for logs: what is resolved

    @property
    def tls_name(self) -> str | None: ...  # the name certificates carry, if not each address's host

    async def resolve(self) -> list[str]: ...


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class StaticResolver:
    addresses: tuple[str, ...]
    tls_name: str | None = None

    @property
    def description(self) -> str:
        return ",".join(self.addresses)

    async def resolve(self) -> list[str]:
        return list(self.addresses)


@dataclass
class FileResolver:
    path: Path
    tls_name: str | None = None

    @property
    def description(self) -> str:
        return f"file {self.path}"

    async def resolve(self) -> list[str]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return parse_endpoints(text)


@dataclass
class DnsResolver:
    host: str
    port: int

    @property
    def description(self) -> str:
        return f"dns {self.host}:{self.port}"

    @property
    def tls_name(self) -> str:
        return self.host  # pod addresses change; the certificate names the Service

    async def resolve(self) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        return sorted({join_host_port(str(info[4][0]), self.port) for info in infos})


def parse_endpoints(text: str) -> list[str]:
    """The `host:port` lines of an endpoints file, in order, without duplicates; bad lines are errors."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            host, port = split_host_port(entry)
            seen[join_host_port(host, port)] = None
    return list(seen)


ADDRESS_LIST_SCHEMES = ("ipv4:", "ipv6:")  # gRPC's literal address lists


def resolver_for(target: str) -> Resolver | None:
    """The resolver a target names; None for a single `host:port` (one channel, as before)."""
    target = target.strip()
    if target.startswith("dns:///"):
        host, port = split_host_port(target.removeprefix("dns:///"))
        return DnsResolver(host, port)
    if target.startswith("dns:"):
        raise ConfigError(f"write DNS targets as dns:///name:port (no authority), got {target!r}")
    if target.startswith("file://"):
        path = target.removeprefix("file://")
        if not path.startswith("/"):
            raise ConfigError(f"file targets need an absolute path (file:///dir/name), got {target!r}")
        return FileResolver(Path(path))
    scheme = next((s for s in ADDRESS_LIST_SCHEMES if target.startswith(s)), None)
    if scheme is not None and "," in target:
        target = target.removeprefix(scheme)
    elif scheme is not None:
        split_host_port(target.removeprefix(scheme))  # one address: gRPC reads the scheme itself
        return None
    if "," in target:
        entries = [entry for entry in (e.strip() for e in target.split(",")) if entry]
        return StaticResolver(tuple(join_host_port(*split_host_port(e)) for e in entries))
    split_host_port(target)  # a single address: just check it
    return None


def plaintext_check_targets(target: str) -> tuple[str, ...]:
    """The addresses to refuse plaintext for at start-up (a file's are checked as they appear)."""
    resolver = resolver_for(target)
    if resolver is None:  # one address, possibly written with gRPC's ipv4:/ipv6: scheme
        bare = target.strip()
        scheme = next((s for s in ADDRESS_LIST_SCHEMES if bare.startswith(s)), "")
        return (join_host_port(*split_host_port(bare.removeprefix(scheme))),)
    if isinstance(resolver, DnsResolver):
        return (join_host_port(resolver.host, resolver.port),)
    if isinstance(resolver, StaticResolver):
        return resolver.addresses
    return ()
