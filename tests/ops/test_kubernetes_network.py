"""deploy/kubernetes, rendered: the NetworkPolicies, evaluated over a model of the cluster's pods, allow
exactly the call path."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from ._kubernetes import (
    NAMESPACE,
    OVERLAYS,
    objects,
)

# --- NetworkPolicies: exactly the call path --------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace, labels, named ports) or an address outside the cluster (no namespace)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[str, int, str], ...] = field(default=())  # (name, number, protocol)

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def pod(name: str, ip: str, namespace: str, labels: dict[str, str], **ports: int) -> Endpoint:
    return Endpoint(
        name, ip, namespace, tuple(labels.items()), tuple((n, p, "TCP") for n, p in ports.items())
    )


def app(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


CLUSTER = (
    pod("edge", "10.0.0.1", NAMESPACE, app("edge"), http=8000, metrics=9101),
    pod("media", "10.0.0.2", NAMESPACE, app("media"), grpc=50051, metrics=9102),
    pod("agent", "10.0.0.3", NAMESPACE, app("agent"), grpc=50052, metrics=9103),
    pod("stray", "10.0.0.4", NAMESPACE, app("debug-shell"), http=8080),
    pod("ingress-controller", "10.0.1.1", "ingress-nginx", app("ingress-nginx"), https=443),
    pod("prometheus", "10.0.2.1", "monitoring", app("prometheus"), web=9090),
    pod("grafana", "10.0.2.2", "monitoring", app("grafana"), web=3000),
    Endpoint(
        "kube-dns",
        "10.0.3.1",
        "kube-system",
        (("k8s-app", "kube-dns"),),
        (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")),
    ),
    pod("other-app", "10.0.4.1", "default", app("voicebridge-lookalike"), http=8000),
    Endpoint("internet", "203.0.113.7", ports=(("https", 443, "TCP"), ("http", 80, "TCP"))),
    Endpoint("private-network", "10.20.0.5", ports=(("https", 443, "TCP"),)),
)

ALLOWED = {
    ("ingress-controller", "edge", 8000, "TCP"),
    ("edge", "media", 50051, "TCP"),
    ("media", "agent", 50052, "TCP"),
    ("prometheus", "edge", 9101, "TCP"),
    ("prometheus", "media", 9102, "TCP"),
    ("prometheus", "agent", 9103, "TCP"),
    ("edge", "internet", 443, "TCP"),  # Twilio's REST API
    ("agent", "internet", 443, "TCP"),  # ElevenLabs
} | {(src, "kube-dns", 53, proto) for src in ("edge", "media", "agent", "stray") for proto in ("UDP", "TCP")}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"the evaluator knows matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(peer: dict[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector", {}), other.label_dict)


def port_matches(rule_ports: list[dict[str, Any]] | None, port: tuple[str, int, str]) -> bool:
    if not rule_ports:
        return True
    name, number, protocol = port
    return any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, name, number) for p in rule_ports
    )


def allowed_one_way(policies, direction: str, subject: Endpoint, other: Endpoint, port) -> bool:
    """Whether `subject`'s policies let traffic in (Ingress) from / out (Egress) to `other` on `port`."""
    if subject.namespace != NAMESPACE:
        return True  # no policies modelled outside voicebridge's namespace
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applying = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], subject.label_dict)
    ]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(peer, NAMESPACE, other) for peer in peers)) and port_matches(
                rule.get("ports"), port
            ):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("direction", ["Ingress", "Egress"])
def test_network_policies_allow_exactly_the_call_path(overlay, direction, rendered):
    """Each direction on its own: a pod admits only its callers even if a caller's egress is open."""
    policies = list(objects(rendered[overlay], "NetworkPolicy").values())
    assert all(p["metadata"]["namespace"] == NAMESPACE for p in policies)
    allowed = set()
    for source in CLUSTER:
        for target in CLUSTER:
            subject, other = (target, source) if direction == "Ingress" else (source, target)
            if source is target or subject.namespace != NAMESPACE:
                continue
            for port in target.ports:
                if allowed_one_way(policies, direction, subject, other, port):
                    allowed.add((source.name, target.name, port[1], port[2]))
    inside = {e.name for e in CLUSTER if e.namespace == NAMESPACE}
    expected = {edge for edge in ALLOWED if edge[1 if direction == "Ingress" else 0] in inside}
    assert sorted(allowed - expected) == [], f"{direction} allowed off the call path"
    assert sorted(expected - allowed) == [], f"{direction} denied on the call path"
