"""Every setting a service reads is documented in .env.example, so operators can find it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r'env\.(?:string|integer|number|boolean|choice|optional)\(\s*"([A-Z][A-Z0-9_]+)"')


def _variables_read() -> set[str]:
    names: set[str] = set()
    for folder in ("services", "libs"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(READ.findall(path.read_text()))
    return names


def test_the_scan_finds_the_settings_it_should() -> None:
    assert {"PUBLIC_BASE_URL", "AGENT_BACKEND", "BARGE_IN_ONSET_MS"} <= _variables_read()


def test_every_setting_read_by_a_service_is_in_env_example() -> None:
    documented = (ROOT / ".env.example").read_text()
    missing = sorted(name for name in _variables_read() if not re.search(rf"\b{name}=", documented))
    assert missing == []
