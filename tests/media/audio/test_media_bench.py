"""Smoke test of the media benchmark: it runs end to end on a short signal and reports every section."""

from __future__ import annotations

import json

import pytest

from voicebridge.bench import media_bench as bench
from voicebridge.media.audio.formats import SUPPORTED_FORMATS


def test_json_report_has_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--json", "--seconds", "0.2", "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"cpu_us_per_call_second", "resampler", "pesq_nb", "targets", "audioop_available"} <= report.keys()
    cpu = report["cpu_us_per_call_second"]["voicebridge"]
    assert set(cpu) == {f.name for f in SUPPORTED_FORMATS}
    assert set(cpu["pcm_16000"]) == {"inbound", "outbound", "total"}
    quality = report["resampler"]["voicebridge"]
    keys = {"delay_ms", "design_delay_ms", "alias_rejection_db", "image_rejection_db", "passband_dev_db"}
    assert keys <= set(quality)
    assert {"pcm_16000", "pcm_24000"} <= report["pesq_nb"].keys()
    assert all({"target", "value", "limit", "pass"} <= t.keys() for t in report["targets"])


def test_human_report_renders_the_same_data() -> None:
    text = bench.render(bench.collect(seconds=0.1, repeats=1))
    for heading in ("CPU µs per call-second", "resampler quality", "PESQ-NB", "targets"):
        assert heading in text
