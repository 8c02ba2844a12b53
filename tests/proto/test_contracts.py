"""The voicebridge.v1 contracts: committed stubs are fresh, and buf lint / buf format pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"


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
