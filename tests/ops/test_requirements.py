"""requirements/constraints.txt pins every third-party dependency, within the pyprojects' ranges."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ._tools import ROOT

PYPROJECTS = [
    "proto/python/pyproject.toml",
    "libs/runtime/pyproject.toml",
    "services/edge/pyproject.toml",
    "services/media/pyproject.toml",
    "services/agent/pyproject.toml",
    "sim/pyproject.toml",
    "bench/pyproject.toml",
]
LOCAL = {"voicebridge-proto", "voicebridge-runtime", "voicebridge-edge", "voicebridge-media"}
LOCAL |= {"voicebridge-agent", "voicebridge-sim", "voicebridge-bench"}


def requirement_lines(path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def pins() -> dict[str, Version]:
    out = {}
    for line in requirement_lines(ROOT / "requirements/constraints.txt"):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"constraints must pin exactly: {line}"
        name = canonicalize_name(req.name)
        assert name not in out, f"pinned twice: {name}"
        out[name] = Version(spec.version)
    return out


def declared() -> list[tuple[str, Requirement]]:
    out = []
    for rel in PYPROJECTS:
        project = tomllib.loads((ROOT / rel).read_text())["project"]
        reqs = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            reqs += extra
        out += [(rel, Requirement(r)) for r in reqs]
    dev = requirement_lines(ROOT / "requirements/dev.txt")
    out += [("requirements/dev.txt", Requirement(r)) for r in dev]
    return out


@pytest.mark.parametrize(("where", "req"), declared(), ids=lambda v: str(v))
def test_declared_dependency_is_pinned_within_range(where, req):
    name = canonicalize_name(req.name)
    if name in LOCAL:
        return
    pinned = pins()
    assert name in pinned, f"{where} needs {req.name}: add a == pin to requirements/constraints.txt"
    assert req.specifier.contains(pinned[name], prereleases=True), (
        f"{where} wants {req}, constraints pin {name}=={pinned[name]}"
    )


def test_no_local_dist_is_pinned():
    assert not set(pins()) & LOCAL
