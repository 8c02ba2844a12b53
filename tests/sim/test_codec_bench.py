"""voicebridge-codec-bench: a short run reports, for every hop and batch size asked, both layouts' cost.

The figures are measurements of the machine: this checks that every row is measured and reported,
not what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
HOPS = ["edge->media", "media->edge", "media->agent", "agent->media"]


def test_a_short_run_reports_both_layouts_for_every_hop_and_size():
    args = ["--calls", "1", "7", "--rounds", "50", "--repeats", "1", "--json"]
    result = subprocess.run(
        [str(BIN / "voicebridge-codec-bench"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["hop"], r["calls_per_message"]) for r in rows] == [(h, n) for h in HOPS for n in (1, 7)]
    for row in rows:
        for figure in ("many_us_per_frame", "batch_us_per_frame"):
            assert isinstance(row[figure], float), (figure, row)
            assert row[figure] >= 0, (figure, row)
