"""Stacks of real service processes for the end-to-end tests (one per agent backend, per session)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from harness.stack import Stack, start_stack


@pytest.fixture(scope="session")
def parrot_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("parrot-stack"), {"AGENT_BACKEND": "parrot"})
    yield stack
    stack.stop()


async def eventually(
    check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05
) -> None:
    """Poll a condition in another process (metrics, logs) until it holds; fail with `what`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}")
        await asyncio.sleep(interval_s)
