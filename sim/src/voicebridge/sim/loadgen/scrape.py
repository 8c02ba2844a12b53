"""A service's /metrics page read into plain dicts, with prometheus_client's own exposition parser.

Samples are keyed by their labels written back in the exposition's form (`a="x",le="0.005"`, in the
order the service wrote them), so callers select samples by a label fragment such as
`grpc_method="Call"` (which `grpc_method="CallMany"` does not contain)."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Scrape = dict[str, dict[str, float]]  # sample name -> {label text -> value}


def label_text(labels: Mapping[str, str]) -> str:
    """Labels as the exposition format writes them inside the braces ('' when there are none)."""
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse(text: str) -> Scrape:
    """Every sample of an exposition text: name -> {label text -> value}."""
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[label_text(sample.labels)] = sample.value
    return out


def scrape(url: str, timeout_s: float = 5.0) -> Scrape:
    """name -> {label text -> value}; the /metrics page of one service."""
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 - loopback
        return parse(reply.read().decode())


def scrape_value(url: str, name: str) -> float | None:
    """One unlabelled sample of a service's /metrics, or None when it is absent."""
    return scrape(url).get(name, {}).get("")


def scrape_sum(url: str, name: str, fragment: str = "", timeout_s: float = 5.0) -> float:
    """Sum of a metric's samples whose label text contains `fragment` (every sample for '')."""
    return sum(v for k, v in scrape(url, timeout_s).get(name, {}).items() if fragment in k)
