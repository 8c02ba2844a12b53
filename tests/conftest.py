"""Suite-wide rule: in CI (`CI=true`) nothing is skipped silently.

A test skips locally when a tool it needs is missing (promtool, prometheus, espeak-ng, sox, ...), so a
developer without them can still run the rest. In CI the same skip would hide a check that never ran:
there it is reported as a failure, with the skip's reason (scripts/test installs every tool).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _fail_the_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not IN_CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in CI (CI=true), which fails the run: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    _fail_the_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    report = yield
    _fail_the_skip(report)
    return report
