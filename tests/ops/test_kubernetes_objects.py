"""deploy/kubernetes, rendered: the objects the deployment needs, and how each is set up (hardening,
probes, images, headless services, disruption budgets, ingress, autoscaling, secrets, dev vs production)."""

from __future__ import annotations

import pytest
import yaml

from voicebridge.runtime.drain import GOODBYE_TIMEOUT_S

from ._kubernetes import (
    GRPC_PORTS,
    OVERLAYS,
    containers,
    env_of,
    objects,
)
from ._tools import ROOT, SERVICES

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


def test_dev_runs_the_parrot_without_elevenlabs_credentials_and_production_the_agent(rendered):
    dev_agent = containers(objects(rendered["dev"], "Deployment")["agent"])[0]
    assert env_of(dev_agent)["AGENT_BACKEND"] == "parrot"
    assert dev_agent["envFrom"] == [{"secretRef": {"name": "voicebridge-agent", "optional": True}}]
    production_agent = containers(objects(rendered["production"], "Deployment")["agent"])[0]
    assert env_of(production_agent)["AGENT_BACKEND"] == "elevenlabs"
    assert production_agent["envFrom"] == [{"secretRef": {"name": "voicebridge-agent"}}]
