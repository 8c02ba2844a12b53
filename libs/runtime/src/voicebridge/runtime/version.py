"""The version a service reports (build info, FastAPI's schema), read from its installed distribution.

Why: the version lives once, in each package's pyproject.toml (all of them move together, see
tests/ops/test_versions.py); code that repeated it drifted from what was installed.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["package_version"]


def package_version(distribution: str) -> str:
    """`voicebridge-edge` → "0.1.0"; raises PackageNotFoundError if it is not installed."""
    return version(distribution)
