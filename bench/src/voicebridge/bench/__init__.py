"""Benchmarks and evaluations of the media service, kept out of the service so its image runs calls only.

`voicebridge-media-bench` (media_bench.py): CPU, resampler quality and PESQ of the audio path; its
instruments in signals.py, the two paths it compares in audio_paths.py, its tables in media_bench_report.py.
`voicebridge-bargein-eval` (bargein_eval.py): the barge-in detector against a synthetic corpus.
"""
