"""What a *_TARGET names (runtime/resolvers.py): pure parsing, table-tested, and the three resolvers."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebridge.runtime.config import ConfigError
from voicebridge.runtime.resolvers import (
    DnsResolver,
    FileResolver,
    StaticResolver,
    parse_endpoints,
    plaintext_check_targets,
    resolver_for,
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("127.0.0.1:50051", None),  # one address: one channel, as before
        ("media:50051", None),
        ("dns:///media.voice.svc.cluster.local:50051", DnsResolver("media.voice.svc.cluster.local", 50051)),
        ("file:///run/media.endpoints", FileResolver(Path("/run/media.endpoints"))),
        ("10.0.0.5:50051, 10.0.0.6:50051", StaticResolver(("10.0.0.5:50051", "10.0.0.6:50051"))),
        ("[::1]:1,[::2]:2", StaticResolver(("[::1]:1", "[::2]:2"))),
        # gRPC's address-list scheme is dropped, not read as part of the first host
        ("ipv4:127.0.0.1:1,127.0.0.1:2", StaticResolver(("127.0.0.1:1", "127.0.0.1:2"))),
        ("ipv6:[::1]:1,[::2]:2", StaticResolver(("[::1]:1", "[::2]:2"))),
        ("ipv4:127.0.0.1:1", None),  # one address: gRPC's own channel reads its scheme
    ],
)
def test_targets_name_their_resolver(target: str, expected: object) -> None:
    assert resolver_for(target) == expected


@pytest.mark.parametrize(
    "target",
    [
        "dns://8.8.8.8/media:50051",
        "file://relative/path",
        "media",
        "a:1,b",
        "dns:///media",
        "host:port",
        "ipv4:127.0.0.1",
        "ipv4:127.0.0.1:1,b",
    ],
)
def test_bad_targets_are_refused_at_start(target: str) -> None:
    with pytest.raises(ConfigError):
        resolver_for(target)


def test_an_endpoints_file_is_host_port_lines_with_comments_in_order_without_duplicates() -> None:
    text = "# media replicas\n127.0.0.11:50051  # media-1\n\n127.0.0.12:50051\n127.0.0.11:50051\n[::1]:7\n"
    assert parse_endpoints(text) == ["127.0.0.11:50051", "127.0.0.12:50051", "[::1]:7"]
    with pytest.raises(ConfigError):
        parse_endpoints("127.0.0.1\n")


def test_plaintext_is_checked_for_every_address_known_at_start() -> None:
    assert plaintext_check_targets("10.0.0.5:1,127.0.0.1:2") == ("10.0.0.5:1", "127.0.0.1:2")
    assert plaintext_check_targets("dns:///media:50051") == ("media:50051",)
    assert plaintext_check_targets("file:///x") == ()  # checked as each address appears
    assert plaintext_check_targets("127.0.0.1:50051") == ("127.0.0.1:50051",)
    assert plaintext_check_targets("ipv4:10.0.0.5:50051") == ("10.0.0.5:50051",)
    assert plaintext_check_targets("ipv6:[::1]:50051") == ("[::1]:50051",)


async def test_a_missing_endpoints_file_is_an_empty_set(tmp_path) -> None:
    assert await FileResolver(tmp_path / "none").resolve() == []
    (tmp_path / "some").write_text("127.0.0.1:1\n")
    assert await FileResolver(tmp_path / "some").resolve() == ["127.0.0.1:1"]


async def test_dns_resolves_every_address_of_the_name_through_the_event_loop() -> None:
    resolver = DnsResolver("localhost", 50051)
    assert "127.0.0.1:50051" in await resolver.resolve()
    assert resolver.tls_name == "localhost"  # certificates name the Service, not each pod
