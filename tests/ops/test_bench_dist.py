"""The benchmarks live in their own dist (bench/), not in the media service: same command names, and the
media service's package declares no benchmark, no scipy and no pesq (its image runs calls only)."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

from packaging.requirements import Requirement


def test_the_bench_commands_come_from_the_bench_dist() -> None:
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts["voicebridge-media-bench"] == "voicebridge.bench.media_bench:main"
    assert scripts["voicebridge-bargein-eval"] == "voicebridge.bench.bargein_eval:main"


def test_the_media_service_declares_no_benchmark_dependency() -> None:
    media = distribution("voicebridge-media")
    names = {Requirement(r).name for r in media.requires or []}
    assert not names & {"scipy", "pesq"}
    assert not media.metadata.get_all("Provides-Extra")
    assert not [ep for ep in media.entry_points if "bench" in ep.value or "eval" in ep.value]
