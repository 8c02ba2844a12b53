"""The service Dockerfiles: hadolint-clean, and each image carries only its own service.

Images can't be built here (no Docker engine), so this checks the Dockerfiles' text and the
dependency closures the images would install, computed from the installed distributions' metadata.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ._tools import ROOT, SERVICES, run, venv_tool

LOCAL_DISTS = {"proto/python", "libs/runtime", *(f"services/{s}" for s in SERVICES), "sim", "bench"}
PORTS = {"edge": {"8000"}, "media": {"50051", "9102"}, "agent": {"50052", "9103"}}
# What each image must not contain: the heavy audio stack stays out of the edge, the web stack out of agent.
FORBIDDEN = {
    "edge": {"numpy", "webrtcvad", "webrtcvad-wheels", "scipy"},
    "agent": {"fastapi", "starlette", "uvicorn", "webrtcvad", "webrtcvad-wheels"},
    "media": {"fastapi", "starlette", "uvicorn", "twilio", "elevenlabs", "scipy", "pesq"},
}


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint(service):
    path = ROOT / "services" / service / "Dockerfile"
    result = run([venv_tool("hadolint"), "--no-color", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_negative_control(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python -m http.server\n")
    result = run([venv_tool("hadolint"), "--no-color", str(bad)])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_conventions(service):
    steps = instructions(dockerfile(service))
    froms = [args for op, args in steps if op == "FROM"]
    assert froms, "no FROM"
    for image in froms:
        name = image.split()[0]
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", name), f"base image not pinned: {name}"
    users = [args for op, args in steps if op == "USER"]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}, "must run as a non-root user"
    cmds = [args for op, args in steps if op == "CMD"]
    assert cmds, "no CMD"
    assert cmds[-1].startswith("["), "CMD must be exec form (the service is PID 1, gets SIGTERM)"
    exposed = {p for op, args in steps if op == "EXPOSE" for p in args.split()}
    assert exposed == PORTS[service]
    health = [args for op, args in steps if op == "HEALTHCHECK"]
    assert health, "no HEALTHCHECK"
    assert "CMD [" in health[-1]
    if service == "edge":
        assert "/healthz" in health[-1]
    else:
        assert "voicebridge.runtime.healthcheck" in health[-1]
        assert min(PORTS[service]) in health[-1]
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "PYTHONUNBUFFERED=1" in env


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_only_its_own_service(service):
    steps = instructions(dockerfile(service))
    installs = [args for op, args in steps if op == "RUN" and "pip install" in args]
    assert installs, "no pip install"
    installed = set()
    for command in installs:
        words = shlex.split(command)
        assert "--no-cache-dir" in words
        assert "-c" in words
        assert words[words.index("-c") + 1] == "requirements/constraints.txt"
        installed |= {w.removeprefix("./").rstrip("/") for w in words if w.removeprefix("./") in LOCAL_DISTS}
        assert "-e" not in words, "images install non-editable (package data is copied)"
    assert installed == {"proto/python", "libs/runtime", f"services/{service}"}
    copied = {args.split()[0] for op, args in steps if op == "COPY" and not args.startswith("--from")}
    others = {f"services/{s}" for s in SERVICES if s != service} | {"sim", "bench", "tests", "."}
    assert not copied & others, f"copies another component: {copied & others}"


def closure(dist: str) -> set[str]:
    """Names of dist and everything it installs (from installed metadata), following requested extras."""
    done: set[tuple[str, tuple[str, ...]]] = set()
    names: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(dist, ())]
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in done:
            continue
        done.add(key)
        names.add(key[0])
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((req.name, tuple(sorted(req.extras))))
    return names


def declared(service: str) -> set[str]:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}


@pytest.mark.parametrize("service", SERVICES)
def test_pyproject_does_not_declare_foreign_stacks(service):
    clash = declared(service) & {canonicalize_name(n) for n in FORBIDDEN[service]}
    assert not clash, f"services/{service}/pyproject.toml declares {sorted(clash)}"


@pytest.mark.parametrize("service", SERVICES)
def test_image_dependency_closure_stays_small(service):
    names = closure(f"voicebridge-{service}")
    assert {f"voicebridge-{service}", "voicebridge-runtime", "grpcio"} <= names, "install the local dists"
    clash = names & {canonicalize_name(n) for n in FORBIDDEN[service]}
    assert not clash, f"the {service} image would install {sorted(clash)}"


@pytest.mark.parametrize("service", SERVICES)
def test_package_data_reaches_the_image(service):
    """Non-Python files under the service's src (e.g. the agent's prompts) match its package-data globs.

    The images install non-editable, so a data file no glob matches would be missing at run time.
    """
    project = ROOT / "services" / service
    config = tomllib.loads((project / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"].get("package-data", {})
    globs = [g for patterns in package_data.values() for g in patterns]
    src = project / "src"
    skip = {".py", ".pyc", ".typed"}
    data = [
        p
        for p in src.rglob("*")
        if p.is_file() and p.suffix not in skip and "egg-info" not in str(p) and "__pycache__" not in p.parts
    ]
    unmatched = [str(p.relative_to(src)) for p in data if not any(p.match(g) for g in globs)]
    assert not unmatched, f"add a package-data glob for: {unmatched}"


def test_closure_positive_control():
    assert {"numpy", "webrtcvad-wheels"} <= closure("voicebridge-media")
    assert {"uvicorn", "httptools", "fastapi"} <= closure("voicebridge-edge")  # uvicorn[standard]


def test_dockerignore_keeps_junk_out():
    text = (ROOT / ".dockerignore").read_text()
    lines = {line.strip() for line in text.splitlines()}
    # Either an allow-list (everything ignored, then re-included) or explicit exclusions.
    if "*" in lines:
        included = {line[1:] for line in lines if line.startswith("!")}
        assert not any(p.startswith((".venv", "tests", ".git", "sim", ".env")) for p in included)
        assert "**/__pycache__" in lines
    else:
        for pattern in (".venv", "tests", "**/__pycache__", ".git", ".env"):
            assert pattern in lines
