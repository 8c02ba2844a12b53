"""Streaming polyphase resamplers: filter quality, delay, exact sample accounting and chunking invariance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from audio_signals import band_energy_ratio_db, fit_sine, from_pcm, rms, steady, to_pcm, tone, xcorr_lag
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly, upfirdn

from voicebridge.media.audio.resample import (
    PassthroughResampler,
    PolyphaseResampler,
    Resampler,
    make_resampler,
)
from voicebridge.media.audio.resample.design import SCALE_BITS, design_filter

AGENT_RATES = (16000, 22050, 24000, 44100, 48000)
PAIRS = [(8000, r) for r in AGENT_RATES] + [(r, 8000) for r in AGENT_RATES]
DOWN_PAIRS = [(r, 8000) for r in AGENT_RATES]
UP_PAIRS = [(8000, r) for r in AGENT_RATES]
MAX_DELAY_S = {16000: 0.002, 24000: 0.002, 48000: 0.002, 22050: 0.010, 44100: 0.010}


def stream(r: Resampler, x: np.ndarray, chunk_s: float = 0.02, rate: int = 8000) -> np.ndarray:
    """Feed `x` in 20 ms chunks, as the pipeline does."""
    n = round(rate * chunk_s)
    pcm = to_pcm(x)
    return from_pcm(b"".join(r.process(pcm[i : i + 2 * n]) for i in range(0, len(pcm), 2 * n)))


def prototype_taps(in_rate: int, out_rate: int) -> np.ndarray:
    """The quantised prototype filter, rebuilt from the bank, for an independent scipy implementation."""
    d = design_filter(in_rate, out_rate)
    return d.bank[:, ::-1].T.reshape(-1)


def test_make_resampler_returns_passthrough_for_equal_rates() -> None:
    r = make_resampler(8000, 8000)
    pcm = b"\x01\x02\x03\x04"
    assert isinstance(r, PassthroughResampler)
    assert r.process(pcm) is pcm
    assert r.delay_s == 0.0


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_implements_the_protocol(in_rate: int, out_rate: int) -> None:
    r = make_resampler(in_rate, out_rate)
    assert isinstance(r, Resampler)
    assert isinstance(r, PolyphaseResampler)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(0, 8000), (8000, -1)])
def test_rejects_nonpositive_rates(in_rate: int, out_rate: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        make_resampler(in_rate, out_rate)


def test_taps_are_exact_multiples_of_the_scale() -> None:
    for in_rate, out_rate in PAIRS:
        bank = design_filter(in_rate, out_rate).bank * 2.0**SCALE_BITS
        assert np.array_equal(bank, np.rint(bank))


def test_filters_are_designed_once_per_pair() -> None:
    assert make_resampler(8000, 16000).design is make_resampler(8000, 16000).design


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_matches_scipy_upfirdn_with_the_same_taps(in_rate: int, out_rate: int) -> None:
    """An independent implementation of the same filter (saturating full-scale noise included)."""
    x = np.random.default_rng(1).uniform(-40000, 40000, in_rate // 5)
    x = np.clip(np.rint(x), -32768, 32767)  # full-scale, clipped: exercises output saturation
    d = design_filter(in_rate, out_rate)
    y = from_pcm(make_resampler(in_rate, out_rate).process(to_pcm(x)))
    ref = upfirdn(prototype_taps(in_rate, out_rate), x, d.up, d.down)[: len(y)]
    assert np.max(np.abs(y - np.clip(np.rint(ref), -32768, 32767))) <= 1


@pytest.mark.parametrize(("in_rate", "out_rate"), [*PAIRS, (8000, 8000)])
def test_sixty_seconds_in_gives_exactly_sixty_seconds_out(in_rate: int, out_rate: int) -> None:
    r = make_resampler(in_rate, out_rate)
    chunk = bytes(2 * (in_rate // 50))
    fed = produced = 0
    for _ in range(60 * 50):
        produced += len(r.process(chunk)) // 2
        fed += len(chunk) // 2
        assert produced == math.ceil(fed * out_rate / in_rate)  # never drifts, even within a cycle
    assert produced == 60 * out_rate


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_odd_sample_counts_keep_exact_accounting(in_rate: int, out_rate: int) -> None:
    r = make_resampler(in_rate, out_rate)
    sizes = [1, 0, 3, 7, 1, 159, 441, 2, 1000]
    produced = sum(len(r.process(bytes(2 * n))) // 2 for n in sizes)
    assert produced == math.ceil(sum(sizes) * out_rate / in_rate)


@pytest.mark.parametrize(("in_rate", "out_rate"), [*PAIRS, (8000, 8000)])
def test_torn_sample_is_rejected(in_rate: int, out_rate: int) -> None:
    with pytest.raises(ValueError, match="whole int16"):
        make_resampler(in_rate, out_rate).process(b"\x00\x00\x00")


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_chunking_gives_identical_bytes(in_rate: int, out_rate: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=0, max_value=1500), label="samples")
    seed = data.draw(st.integers(min_value=0, max_value=2**32 - 1), label="seed")
    x = np.random.default_rng(seed).integers(-32768, 32768, n).astype("<i2")
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=n), max_size=12), label="cuts"))
    whole = make_resampler(in_rate, out_rate).process(x.tobytes())
    r = make_resampler(in_rate, out_rate)
    bounds = [0, *cuts, n]
    pieces = b"".join(r.process(x[a:b].tobytes()) for a, b in itertools.pairwise(bounds))
    assert pieces == whole


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_reset_restarts_the_stream(in_rate: int, out_rate: int) -> None:
    x = to_pcm(tone(1000, in_rate, 0.05))
    r = make_resampler(in_rate, out_rate)
    first = r.process(x)
    r.process(to_pcm(tone(300, in_rate, 0.013)))
    r.reset()
    assert r.process(x) == first


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_delay_is_within_budget_and_matches_cross_correlation(in_rate: int, out_rate: int) -> None:
    rate8k = 8000 if in_rate == 8000 else out_rate
    budget = MAX_DELAY_S[max(in_rate, out_rate)]
    r = make_resampler(in_rate, out_rate)
    assert 0 < r.delay_s <= budget
    # telephone-band noise, so both the resampler and the zero-phase reference pass it unchanged
    noise = np.random.default_rng(2).standard_normal(rate8k)
    band = resample_poly(resample_poly(noise, 3, 1), 1, 3) * 4000
    x = resample_poly(band, in_rate // math.gcd(in_rate, rate8k), rate8k // math.gcd(in_rate, rate8k))
    ideal = resample_poly(x, out_rate // math.gcd(in_rate, out_rate), in_rate // math.gcd(in_rate, out_rate))
    y = stream(r, x, rate=in_rate)
    lag = xcorr_lag(ideal[: len(y)], y)
    assert abs(lag - r.delay_s * out_rate) <= 0.5 + 1e-9


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
@pytest.mark.parametrize("freq", [100, 300, 1000, 2000, 3000, 3400])
def test_passband_is_flat_to_3400_hz(in_rate: int, out_rate: int, freq: int) -> None:
    x = tone(freq, in_rate, 0.5)
    y = steady(stream(make_resampler(in_rate, out_rate), x, rate=in_rate), out_rate)
    amp, _ = fit_sine(y, freq, out_rate)
    assert abs(20 * math.log10(amp / 16000)) <= 0.1


def _alias_cases() -> list[tuple[int, float]]:
    cases = []
    for rate in AGENT_RATES:
        for freq in (4700, 5000, 6000, 7500, 10000, 15000, 21000):
            if freq < rate / 2 - 100:
                cases.append((rate, freq))
    return cases


@pytest.mark.parametrize(("in_rate", "freq"), _alias_cases())
def test_alias_rejection_at_least_70_db(in_rate: int, freq: float) -> None:
    """A tone above 4.6 kHz would fold into the telephone band; it must come out ≥ 70 dB down."""
    x = tone(freq, in_rate, 0.5)
    y = steady(stream(make_resampler(in_rate, 8000), x, rate=in_rate), 8000)
    assert 20 * math.log10(rms(x) / max(rms(y), 1e-9)) >= 70


@pytest.mark.parametrize("out_rate", AGENT_RATES)
@pytest.mark.parametrize("freq", [1000, 3000])
def test_image_rejection_at_least_70_db(out_rate: int, freq: int) -> None:
    """Upsampling must not create images (8000 − f, 8000 + f, …): energy above 4 kHz ≥ 70 dB down."""
    y = steady(stream(make_resampler(8000, out_rate), tone(freq, 8000, 0.6)), out_rate)
    assert band_energy_ratio_db(y, out_rate, 4000) <= -70


def test_image_measure_sees_images_when_there_are_some() -> None:
    """The measure itself: zero-stuffing without a filter leaves the 7 kHz image at full level."""
    x = tone(1000, 8000, 0.5)
    stuffed = np.zeros(2 * len(x))
    stuffed[::2] = x
    assert band_energy_ratio_db(stuffed, 16000, 4000) > -4


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (8000, 24000), (8000, 44100)])
def test_round_trip_of_a_tone_has_high_snr(in_rate: int, out_rate: int) -> None:
    up = stream(make_resampler(in_rate, out_rate), tone(1000, 8000, 0.6))
    back = steady(stream(make_resampler(out_rate, in_rate), up, rate=out_rate), in_rate)
    amp, residual = fit_sine(back, 1000, in_rate)
    assert 20 * math.log10(amp / math.sqrt(2) / rms(residual)) >= 70


def test_speech_through_16k_matches_an_offline_resampler(speech_16k: np.ndarray) -> None:
    """Real speech 16 kHz → 8 kHz, compared (delay-aligned, telephone band) with scipy's long filter."""
    r = make_resampler(16000, 8000)
    y = stream(r, speech_16k, rate=16000)
    ideal = resample_poly(speech_16k, 1, 2, window=("kaiser", 12.0))
    lag = round(r.delay_s * 8000)
    assert xcorr_lag(ideal, y) == lag
    aligned = y[lag:]
    ideal = ideal[: len(aligned)]
    # compare inside 3.4 kHz, where both filters are meant to be transparent
    yb, ib = (resample_poly(resample_poly(s, 17, 20), 20, 17) for s in (aligned, ideal))
    assert 20 * math.log10(rms(ib) / rms(yb - ib)) >= 35


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_huge_then_tiny_chunks_equal_the_whole_stream(in_rate: int, out_rate: int) -> None:
    """A chunk larger than the reused buffer (a TTS burst) followed by single samples."""
    x = np.random.default_rng(3).integers(-32768, 32768, 12_000).astype("<i2")
    whole = make_resampler(in_rate, out_rate).process(x.tobytes())
    r = make_resampler(in_rate, out_rate)
    parts = [r.process(x[:11_000].tobytes())]
    parts += [r.process(x[i : i + 1].tobytes()) for i in range(11_000, 11_050)]
    parts.append(r.process(x[11_050:].tobytes()))
    assert b"".join(parts) == whole
