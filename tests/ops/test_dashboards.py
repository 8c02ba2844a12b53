"""Lint of the committed Grafana dashboards: they parse, point at the provisioned datasource, set units,
use $__rate_interval and the job variable, and only reference metrics the services really expose."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
from prometheus_client import REGISTRY

from ._tools import ROOT

DASHBOARDS = ROOT / "deploy/grafana/dashboards"
DATASOURCE_UID = "prometheus"


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(panel, expr) for every Prometheus target of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target["expr"]


def substitute(expr: str, job: str = ".*", rate_interval: str = "1m") -> str:
    """What Grafana sends: template variables replaced."""
    return expr.replace("$__rate_interval", rate_interval).replace("$job", job)


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (walks the parsed AST)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            return
        if isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
            return
        for attr in ("expr", "lhs", "rhs", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (int, float, str)):
                walk(child)
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expr))
    return names


_TEMPLATE = re.compile(r"\$(\w+)|\$\{(\w+)")


def variables(expr: str) -> set[str]:
    return {a or b for a, b in _TEMPLATE.findall(expr)}


SERVICE_METRIC_MODULES = (
    "voicebridge.runtime.metrics",
    "voicebridge.runtime.grpc_metrics",
    "voicebridge.runtime.mux",
    "voicebridge.runtime.drain",
    "voicebridge.runtime.replicas",
    "voicebridge.edge.metrics",
    "voicebridge.media.metrics",
    "voicebridge.agent.metrics",
    "voicebridge.agent.backends.elevenlabs.metrics",
)
PROMETHEUS_OWN = {"up"}  # added by the scraper, not the services
EXPECTED = {
    "voicebridge-overview.json",
    "voicebridge-edge.json",
    "voicebridge-media.json",
    "voicebridge-agent.json",
}


def exposed_names() -> set[str]:
    """Every sample name the services can expose (families seen even before their first sample)."""
    for module in SERVICE_METRIC_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_service_has_a_dashboard_and_the_overview_exists():
    assert set(dashboards()) == EXPECTED


def test_dashboards_are_generated_from_the_committed_script():
    """deploy/grafana/generate.py is the source; the JSON must match what it writes (drift check)."""
    spec = importlib.util.spec_from_file_location("generate", ROOT / "deploy/grafana/generate.py")
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    rendered = generate.render()
    assert set(rendered) == EXPECTED
    for name, text in rendered.items():
        assert (ROOT / "deploy/grafana/dashboards" / name).read_text() == text, (
            f"{name} is stale: run python deploy/grafana/generate.py"
        )


def test_uids_are_unique_and_stable():
    uids = [d["uid"] for d in dashboards().values()]
    assert len(uids) == len(set(uids))
    for name, d in dashboards().items():
        assert d["uid"] == name.removesuffix(".json")
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), name


def test_every_panel_and_target_uses_the_provisioned_datasource():
    for name, d in dashboards().items():
        for panel in panels(d):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, (
                name,
                panel["title"],
            )
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID, (name, panel["title"])
        for var in d["templating"]["list"]:
            assert var["datasource"]["uid"] == DATASOURCE_UID


def test_every_dashboard_has_a_job_variable_used_by_every_query():
    for name, d in dashboards().items():
        assert [v["name"] for v in d["templating"]["list"]] == ["job"], name
        for panel, expr in queries(d):
            assert 'job=~"$job"' in expr, (name, panel["title"], expr)
            assert variables(expr) <= {"job", "__rate_interval"}, (name, expr)


def test_every_timeseries_panel_has_a_unit():
    for name, d in dashboards().items():
        for panel in panels(d):
            if panel["type"] != "row":
                assert panel["fieldConfig"]["defaults"].get("unit"), (name, panel["title"])


def test_latency_panels_are_in_seconds():
    for name, d in dashboards().items():
        for panel, expr in queries(d):
            if "_seconds_bucket" in expr:
                assert panel["fieldConfig"]["defaults"]["unit"] == "s", (name, panel["title"])


def test_every_range_uses_rate_interval():
    for name, d in dashboards().items():
        for panel, expr in queries(d):
            if "[" in expr:
                assert "[$__rate_interval]" in expr, (name, panel["title"], expr)
                assert expr.count("[") == expr.count("[$__rate_interval]"), (name, expr)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_expression_parses(name):
    for panel, expr in queries(dashboards()[name]):
        try:
            promql_parser.parse(substitute(expr))
        except Exception as exc:  # the parser raises plain ValueError/RuntimeError
            pytest.fail(f"{name} / {panel['title']}: {exc}\n{expr}")


def test_every_metric_referenced_exists_in_the_services_exposition():
    exposed = exposed_names() | PROMETHEUS_OWN
    for name, d in dashboards().items():
        for panel, expr in queries(d):
            missing = metric_names(substitute(expr)) - exposed
            assert not missing, f"{name} / {panel['title']}: {sorted(missing)} not exposed by any service"


def test_latency_quantiles_come_in_triples():
    """Every latency histogram on a dashboard shows p50, p95 and p99 (the issue's requirement)."""
    for name, d in dashboards().items():
        for panel in panels(d):
            exprs = [t["expr"] for t in panel.get("targets", [])]
            if any("histogram_quantile" in e for e in exprs) and "lag" not in panel["title"]:
                qs = sorted({e.split(",")[0].removeprefix("histogram_quantile(") for e in exprs})
                assert qs == ["0.5", "0.95", "0.99"], (name, panel["title"])


def test_overview_covers_every_latency_of_the_issue():
    overview = dashboards()["voicebridge-overview.json"]
    referenced = {m for _, e in queries(overview) for m in metric_names(substitute(e))}
    for metric in (
        "agent_elevenlabs_inbound_added_latency_seconds_bucket",
        "edge_outbound_added_latency_seconds_bucket",
        "media_heard_turn_latency_seconds_bucket",
        "media_barge_in_latency_seconds_bucket",
        "media_mark_ack_lag_seconds_bucket",
        "agent_elevenlabs_connect_seconds_bucket",
        "agent_elevenlabs_ping_rtt_seconds_bucket",
        "edge_calls_active",
        "media_calls_active",
        "agent_sessions_active",
        "edge_call_ends_total",
    ):
        assert metric in referenced, metric


def test_grafana_opens_on_the_overview():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["grafana"]["environment"]
    assert (
        env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        == "/var/lib/grafana/dashboards/voicebridge-overview.json"
    )
