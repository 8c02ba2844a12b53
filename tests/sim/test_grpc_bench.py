"""voicebridge-grpc-bench: a short real run (a server process, a paced stream) reports each row as JSON.

The figures are measurements of the machine (a CPU figure over 0.3 s can read 0 on a coarse clock):
this checks that every row is measured and reported, not what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


FIGURES = (
    "achieved_rate_per_s",
    "client_cpu_us_per_message",
    "server_cpu_us_per_message",
    "write_await_p50_us",
    "cores_both_ends",
)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_short_run_measures_both_ends_of_every_requested_row():
    args = ["--rates", "100", "400", "--items", "1", "5", "--seconds", "0.3", "--json"]
    result = subprocess.run(
        [str(BIN / "voicebridge-grpc-bench"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    rows_asked = [(1, 100), (1, 400), (5, 100), (5, 400)]
    assert [(r["items_per_message"], r["rate_per_s"]) for r in rows] == rows_asked
    for row in rows:
        assert row["messages"] > 0  # the stream carried messages at that rate and size
        for figure in FIGURES:
            assert isinstance(row[figure], float), (figure, row)
            assert row[figure] >= 0, (figure, row)
