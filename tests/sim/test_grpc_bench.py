"""voicebridge-grpc-bench: a short real run (a server process, a paced stream) reports each row as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


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
        assert row["messages"] > 0
        assert row["client_cpu_us_per_message"] > 0  # every message cost the client something
        assert row["server_cpu_us_per_message"] > 0  # and the server process, read through psutil
        assert row["write_await_p50_us"] > 0
