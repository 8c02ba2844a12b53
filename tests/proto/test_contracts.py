"""The voicebridge.v1 contracts: committed stubs are fresh, buf lint / buf format pass, and no change breaks
the released contract (`buf breaking` against proto/baseline/voicebridge-v1.binpb, see proto/README.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
BASELINE = PROTO / "baseline" / "voicebridge-v1.binpb"


def venv_tool(name: str) -> str:
    """buf from the venv (requirements/dev.txt: buf-bin), else from PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: run scripts/test (it installs requirements/dev.txt)"
    return found


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_generated_stubs_match_the_protos():
    result = run([sys.executable, "proto/generate.py", "--check"], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint():
    result = run([venv_tool("buf"), "lint"], cwd=PROTO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_format():
    result = run([venv_tool("buf"), "format", "--diff", "--exit-code"], cwd=PROTO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_negative_control(tmp_path):
    # The check can fail: a copy of the module with a badly named service.
    module = tmp_path / "proto"
    (module / "voicebridge/v1").mkdir(parents=True)
    (module / "buf.yaml").write_text((PROTO / "buf.yaml").read_text())
    (module / "voicebridge/v1/bad.proto").write_text(
        'syntax = "proto3";\npackage voicebridge.v1;\nmessage ping_request {}\n'
        "service bad_service { rpc ping(ping_request) returns (ping_request); }\n"
    )
    result = run([venv_tool("buf"), "lint"], cwd=module)
    assert result.returncode != 0


def _breaking(module: Path) -> subprocess.CompletedProcess[str]:
    return run([venv_tool("buf"), "breaking", "--against", str(BASELINE)], cwd=module)


def _copy_of_the_module(tmp_path: Path) -> Path:
    module = tmp_path / "proto"
    shutil.copytree(PROTO / "voicebridge", module / "voicebridge")
    shutil.copy(PROTO / "buf.yaml", module / "buf.yaml")
    return module


def test_buf_breaking_against_the_released_contract():
    result = _breaking(PROTO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_renumbered_field(tmp_path):
    # A field of agent.proto gets another number: every peer built on the released contract would
    # read it as unknown, silently. The check must refuse it.
    module = _copy_of_the_module(tmp_path)
    agent = module / "voicebridge/v1/agent.proto"
    text, n = re.subn(r"(message SessionStart \{\n  CallInfo call = )1;", r"\g<1>99;", agent.read_text())
    assert n == 1, "the edit no longer applies: pick another field"
    agent.write_text(text)
    result = _breaking(module)
    assert result.returncode != 0
    assert "SessionStart" in result.stdout + result.stderr


def test_buf_breaking_allows_an_added_field(tmp_path):
    # Additive changes (a new field with a fresh number, a new message) keep old peers working.
    module = _copy_of_the_module(tmp_path)
    agent = module / "voicebridge/v1/agent.proto"
    added = "message SessionStart {\n  string added_later = 900;\n"
    text, n = re.subn(r"message SessionStart \{\n", added, agent.read_text())
    assert n == 1
    agent.write_text(text + "\nmessage AddedLater {\n  string note = 1;\n}\n")
    result = _breaking(module)
    assert result.returncode == 0, result.stdout + result.stderr
