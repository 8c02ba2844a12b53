"""Fixtures of the ops tests: the Kubernetes overlays rendered once for every test file that checks them."""

from __future__ import annotations

from typing import Any

import pytest

from ._kubernetes import OVERLAYS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}
