"""deploy/kubernetes rendered with kubectl's built-in kustomize: the objects the kubernetes tests check.

Shared by tests/ops/test_kubernetes*.py (split by subject); the `rendered` fixture is in conftest.py.
"""

from __future__ import annotations

from typing import Any

import yaml

from ._tools import ROOT, run, venv_tool

K8S = ROOT / "deploy/kubernetes"
OVERLAYS = ("dev", "production")
K8S_VERSION = "1.37.0"
NAMESPACE = "voicebridge"
GRPC_PORTS = {"media": 50051, "agent": 50052}
METRICS_PORTS = {"edge": 9101, "media": 9102, "agent": 9103}


def render(overlay: str) -> list[dict[str, Any]]:
    result = run([venv_tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}
