"""promtool over the Prometheus config, the rules and the rules' unit tests (deploy/prometheus/tests)."""

from __future__ import annotations

import shutil

import pytest

from ._tools import ROOT, run

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (scripts/test installs apt: prometheus)"
)


def test_rules_are_valid():
    rules = sorted(str(p) for p in (ROOT / "deploy/prometheus/rules").glob("*.yml"))
    result = run(["promtool", "check", "rules", *rules])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    tests = sorted(p.name for p in (ROOT / "deploy/prometheus/tests").glob("*.yml"))
    assert tests, "no promtool unit tests found"
    result = run(["promtool", "test", "rules", *tests], cwd=ROOT / "deploy/prometheus/tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_is_valid_and_loads_the_rules():
    result = run(["promtool", "check", "config", "deploy/prometheus/prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rule files found" in result.stdout
