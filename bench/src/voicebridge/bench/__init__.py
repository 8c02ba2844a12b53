"""Benchmarks and evaluations of the media service, kept out of the service so its image runs calls only.

`voicebridge-media-bench` (media_bench.py): CPU, resampler quality and PESQ of the audio path.
`voicebridge-bargein-eval` (bargein_eval.py): the barge-in detector against a synthetic corpus.
"""
