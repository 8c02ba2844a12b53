"""docker-compose.yml is valid for Compose v2 (offline, no daemon) and wires the stack as intended."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ._tools import ROOT, compose_binary, run

COMPOSE_FILE = ROOT / "docker-compose.yml"
PROFILES = [[], ["--profile", "observability"]] if "observability" in COMPOSE_FILE.read_text() else [[]]


def compose(*args: str, file: Path = COMPOSE_FILE, env_file: Path | None = None):
    cmd = [compose_binary(), "-f", str(file), "--project-directory", str(file.parent)]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    return run([*cmd, *args], cwd=file.parent)


@pytest.fixture(scope="module")
def empty_env(tmp_path_factory) -> Path:
    # Interpolation must not depend on a developer's own .env.
    path = tmp_path_factory.mktemp("env") / "empty.env"
    path.write_text("")
    return path


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: " ".join(p) or "default")
def test_config_is_valid(profile, empty_env):
    result = compose(*profile, "config", "-q", env_file=empty_env)
    assert result.returncode == 0, result.stderr


def test_negative_control_broken_condition_fails(tmp_path, empty_env):
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    assert "condition: service_healthy" in text
    broken.write_text(text.replace("condition: service_healthy", "condition: service_ready", 1))
    result = compose("config", "-q", file=broken, env_file=empty_env)
    assert result.returncode != 0
    assert "condition" in result.stderr


@pytest.fixture(scope="module")
def model(empty_env) -> dict:
    result = compose("--profile", "observability", "config", "--format", "json", env_file=empty_env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("service", "dependency"), [("edge", "media"), ("media", "agent")], ids=["edge->media", "media->agent"]
)
def test_startup_order_waits_for_health(model, service, dependency):
    depends = model["services"][service]["depends_on"]
    assert depends[dependency]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", ["edge", "media", "agent"])
def test_app_service_conventions(model, service):
    svc = model["services"][service]
    assert svc["build"]["dockerfile"] == f"services/{service}/Dockerfile"
    assert Path(svc["build"]["context"]) == ROOT
    assert svc["restart"] == "unless-stopped"
    assert svc["stop_grace_period"] == "50s"  # > the 30 s drain deadline + the goodbye
    assert svc["healthcheck"]["test"][0] == "CMD"
    assert not svc.get("profiles")


def test_wiring(model):
    services = model["services"]
    assert services["edge"]["environment"]["MEDIA_TARGET"] == "media:50051"
    assert services["media"]["environment"]["AGENT_TARGET"] == "agent:50052"
    assert services["media"]["environment"]["MEDIA_LISTEN"].endswith(":50051")
    assert services["agent"]["environment"]["AGENT_LISTEN"].endswith(":50052")
    assert {"50051", "9102"} <= set(services["media"]["expose"])
    assert {"50052", "9103"} <= set(services["agent"]["expose"])
    (port,) = services["edge"]["ports"]
    assert port["target"] == 8000
    assert port["published"] == "8000"
    assert port["host_ip"] == "127.0.0.1"  # published on the host's loopback by default
    assert services["edge"]["environment"]["EDGE_PUBLISHED_ON"] == "127.0.0.1:8000"
    assert "9101" in services["edge"]["expose"]
    # Every gRPC hop is mutual TLS, each service with its own certificate from the certs volume.
    for name in ("edge", "media", "agent"):
        env = services[name]["environment"]
        assert env["GRPC_TLS_CERT"] == f"/certs/{name}.pem"
        assert env["GRPC_TLS_KEY"] == f"/certs/{name}-key.pem"
        assert env["GRPC_TLS_CA"] == "/certs/ca.pem"
        assert services[name]["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    # Only the edge is reachable from the host.
    assert not services["media"].get("ports")
    assert not services["agent"].get("ports")


def test_observability_profile(model):
    services = model["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    assert services["prometheus"]["image"] == "prom/prometheus:v2.55.1"
    assert services["grafana"]["image"] == "grafana/grafana:11.3.0"
    for required in (
        "deploy/prometheus/prometheus.yml",
        "deploy/grafana/provisioning/datasources",
        "deploy/grafana/provisioning/dashboards",
        "deploy/grafana/dashboards",
    ):
        assert (ROOT / required).exists(), required


def test_prometheus_scrapes_the_three_services():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["edge"] == ["edge:9101"]  # its own metrics listener, not the Twilio-facing port
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])
    assert targets["media"] == ["media:9102"]
    assert targets["agent"] == ["agent:9103"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt: prometheus)")
def test_promtool_check_config():
    result = run(["promtool", "check", "config", "deploy/prometheus/prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning():
    yaml = pytest.importorskip("yaml")
    base = ROOT / "deploy/grafana"
    datasources = [
        ds
        for f in sorted((base / "provisioning/datasources").glob("*.y*ml"))
        for ds in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert any(ds["uid"] == "prometheus" and ds["type"] == "prometheus" for ds in datasources)
    providers = [
        p
        for f in sorted((base / "provisioning/dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert any(p["options"]["path"] == "/var/lib/grafana/dashboards" for p in providers)
    uids = []
    for path in sorted((base / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        uids.append(dashboard["uid"])
        assert dashboard["title"], path.name
        assert isinstance(dashboard["panels"], list), path.name
    assert len(uids) == len(set(uids)), "dashboard uids must be unique"


def test_env_example_documents_the_settings():
    text = (ROOT / ".env.example").read_text()
    for name in (
        "EDGE_PORT", "MEDIA_TARGET", "MEDIA_LISTEN", "MEDIA_METRICS_PORT", "AGENT_TARGET", "AGENT_LISTEN",
        "AGENT_METRICS_PORT", "PUBLIC_BASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
        "TWILIO_VALIDATE_SIGNATURES", "EDGE_API_TOKEN", "AGENT_BACKEND", "ELEVENLABS_AGENT_ID",
        "ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL", "LOG_LEVEL", "LOG_FORMAT",
    ):  # fmt: skip
        assert f"{name}=" in text, f".env.example does not document {name}"


def test_yaml_files_parse():
    yaml = pytest.importorskip("yaml")
    for path in [COMPOSE_FILE, *sorted((ROOT / "deploy").rglob("*.y*ml"))]:
        list(yaml.safe_load_all(path.read_text()))  # Kubernetes manifests hold several documents
