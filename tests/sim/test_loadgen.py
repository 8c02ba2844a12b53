"""The load generator: a 2-call smoke run against the real stack (JSON shape, not numbers), and the
histogram maths it reads the services' latencies with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from voicebridge.sim import loadgen

BIN = Path(sys.executable).parent


@pytest.mark.e2e
@pytest.mark.slow
def test_two_call_smoke_run_reports_every_figure_as_json(tmp_path):
    result = subprocess.run(
        [
            str(BIN / "voicebridge-load"),
            "--calls",
            "2",
            "--duration",
            "3",
            "--json",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout)
    assert out["mode"] == "concurrent"
    assert out["calls"] == 2
    for way in ("inbound_caller_to_elevenlabs", "outbound_elevenlabs_to_caller"):
        assert set(out["added_latency"][way]) == {"count", "p50_ms", "p99_ms", "share_within_5ms"}
        assert out["added_latency"][way]["count"] > 0
    assert set(out["heard_turn_latency"]) == {"media_histogram", "caller_end_to_end"}
    assert set(out["playback_gaps"]) == {"over_40ms", "worst_in_utterance_ms", "calls_with_gaps"}
    assert {"caller_to_elevenlabs", "elevenlabs_to_caller"} <= set(out["lost_frames"])
    assert out["lost_frames"]["emulator_frames_received"] is not None
    assert set(out["cpu_ms_per_call_second"]) == {"total", "edge", "media", "agent"}
    assert set(out["peak_rss_mib"]) == {"edge", "media", "agent"}
    assert {"cpus", "cpu_model", "python"} <= set(out["machine"])
    assert out["slo"] == {"met": out["failed_calls"] == 0, "checks": out["slo"]["checks"]}


@pytest.mark.e2e
@pytest.mark.slow
def test_sequential_signed_url_run_reports_the_redaction_set_back_at_its_idle_size(tmp_path):
    argv = [str(BIN / "voicebridge-load"), "--sequential", "3", "--call-seconds", "0", "--signed-urls"]
    result = subprocess.run(
        [*argv, "--json", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["mode"], out["calls"], out["failed_calls"]) == ("sequential", 3, 0)
    # The API key alone: each call's signed URL and signature were forgotten when it ended.
    assert out["agent_log_redactions"] == {"first": 1.0, "last": 1.0, "max": 1.0}
    assert all(row["voicebridge_log_redactions"] == 1.0 for row in out["rss_trend_mib"])


def test_an_slo_missed_on_the_command_line_fails_the_run():
    args = loadgen.parse_args(["--slo-gaps", "0", "--slo-cpu-ms-per-call-s", "10"])
    out = {"cpu_ms_per_call_second": {"total": 12.0}, "playback_gaps": {"over_40ms": 0}, "failed_calls": 0}
    slo = loadgen.slo_checks(out, args)
    assert slo["met"] is False
    assert slo["checks"]["cpu_ms_per_call_s"] == {"value": 12.0, "met": False}
    assert slo["checks"]["gaps"] == {"value": 0, "met": True}


def test_rss_growth_worst_gap_and_teardown_are_slos_too():
    args = loadgen.parse_args(
        ["--slo-rss-growth-mib", "4", "--slo-worst-gap-ms", "60", "--slo-teardown-ms", "500"]
    )
    out = {
        "playback_gaps": {"over_40ms": 0, "worst_in_utterance_ms": 80.0},
        "rss_growth_after_warmup_mib": {"edge": 0.2, "media": 1.7, "agent": 0.1},
        "teardown_ms": {"p99_ms": 120.0, "not_torn_down": 1},
        "failed_calls": 0,
    }
    checks = loadgen.slo_checks(out, args)["checks"]
    assert checks["worst_gap_ms"] == {"value": 80.0, "met": False}
    assert checks["rss_growth_mib"] == {"value": 1.7, "met": True}
    assert checks["teardown_p99_ms"] == {"value": 120.0, "met": False}  # a call was never torn down


def test_quantiles_interpolate_inside_buckets_like_histogram_quantile():
    before = {"x_bucket": {'le="0.001"': 5, 'le="0.005"': 5, 'le="+Inf"': 5}}
    after = {"x_bucket": {'le="0.001"': 5, 'le="0.005"': 105, 'le="+Inf"': 105}}
    buckets = loadgen.histogram_delta(before, after, "x")
    assert buckets == [(0.001, 0), (0.005, 100), (float("inf"), 100)]
    assert loadgen.quantile(0.5, buckets) == pytest.approx(0.003)
    assert loadgen.latency_summary(buckets)["share_within_5ms"] == 1.0


def test_gaps_count_only_holes_in_playback_inside_an_utterance():
    ms = 8  # samples per ms
    spans = [
        (0, 300 * ms),  # 300 ms of agent audio
        (310 * ms, 400 * ms),  # after a 10 ms hole: frames 30 ms apart, not a gap
        (460 * ms, 600 * ms),  # after a 60 ms hole: frames 80 ms apart, a gap
        (2000 * ms, 2100 * ms),  # a new utterance after 1.4 s of quiet
    ]
    assert loadgen.gaps(spans) == (1, pytest.approx(0.08))
    assert loadgen.gaps([(0, 800)]) == (0, pytest.approx(0.02))  # one stretch, frames 20 ms apart


def test_the_callers_voice_is_speech_like_mulaw():
    audio = loadgen.speech_like(1.0)
    assert len(audio) == 8000
    assert len(set(audio)) > 50  # not silence, not a single tone


def test_a_metrics_page_is_parsed_into_samples_keyed_by_their_label_text():
    registry = CollectorRegistry()
    frames = Counter("frames", "f", ["direction", "grpc_method"], registry=registry)
    frames.labels("in", "Call").inc(3)
    frames.labels("in", "CallMany").inc(1)
    Gauge("calls_active", "g", registry=registry).set(2)
    lag = Histogram("lag_seconds", "h", ["who"], buckets=(0.005,), registry=registry)
    lag.labels('a"b\\c').observe(0.001)  # a label value the exposition escapes
    samples = loadgen.parse(generate_latest(registry).decode())
    assert samples["frames_total"] == {
        'direction="in",grpc_method="Call"': 3.0,
        'direction="in",grpc_method="CallMany"': 1.0,
    }
    assert samples["calls_active"] == {"": 2.0}
    who = 'who="a\\"b\\\\c"'  # written back as the exposition wrote it
    assert samples["lag_seconds_bucket"] == {f'le="0.005",{who}': 1.0, f'le="+Inf",{who}': 1.0}
    # A fragment selects the per-call method only (its closing quote is not in "CallMany").
    assert loadgen.counter_delta({}, samples, "frames_total", 'grpc_method="Call"') == 3.0
    assert loadgen.histogram_delta({}, samples, "lag_seconds") == [(0.005, 1.0), (float("inf"), 1.0)]
