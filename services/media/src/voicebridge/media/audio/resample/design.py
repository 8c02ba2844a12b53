"""Kaiser-windowed sinc low-pass design for rational L/M resampling, in numpy only (no scipy at runtime).

Why these numbers: one side is always telephone audio, so the filter keeps 0.85 × the lower Nyquist
(3.4 kHz for 8 kHz) flat and stops from 1.15 × (4.6 kHz); whatever lies between 4.0 and 4.6 kHz folds into
3.4–4.0 kHz, which the telephone band does not use. The length is the Kaiser estimate for `atten_db`,
capped so the linear-phase delay stays within `max_delay_s`; the Kaiser β then matches the length actually
used. Taps are rounded to multiples of 2**-SCALE_BITS: with int16 samples every product and partial sum
is then an exact multiple of 2**-SCALE_BITS well inside float64's 53 bits, so the result does not depend
on summation order (BLAS kernels, SIMD), and any chunking of a stream gives bit-identical output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["SCALE_BITS", "FilterDesign", "design_filter"]

#: Taps are integers in units of 2**-SCALE_BITS; |Σ x·h| < 2**15 × Σ|h| ≲ 2**17 needs 17 + 24 bits < 53.
SCALE_BITS = 24


@dataclass(frozen=True)
class FilterDesign:
    """A designed polyphase bank for `in_rate` → `out_rate` (read-only arrays, shared between calls)."""

    in_rate: int
    out_rate: int
    up: int
    down: int
    num_taps: int
    atten_db: float
    #: (up, taps per phase) float64, multiples of 2**-SCALE_BITS; row p, column j multiplies the j-th
    #: oldest sample of the window that ends at the newest input sample for output phase p.
    bank: np.ndarray
    #: Group delay of the prototype filter, in seconds.
    delay_s: float


def _kaiser_beta(atten_db: float) -> float:
    if atten_db > 50:
        return 0.1102 * (atten_db - 8.7)
    if atten_db >= 21:
        return 0.5842 * (atten_db - 21) ** 0.4 + 0.07886 * (atten_db - 21)
    return 0.0


def prototype(
    in_rate: int,
    out_rate: int,
    *,
    atten_db: float = 80.0,
    edge_fraction: float = 0.15,
    max_delay_s: float = 0.002,
) -> tuple[np.ndarray, int, int, float]:
    """The float prototype low-pass at in_rate × up: (taps, up, down, design attenuation in dB)."""
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    fs = in_rate * up
    nyquist = min(in_rate, out_rate) / 2
    width = 2 * edge_fraction * nyquist
    dw = 2 * math.pi * width / fs
    n_kaiser = math.ceil((atten_db - 7.95) / (2.285 * dw)) + 1
    n_delay = 2 * math.floor(max_delay_s * fs) + 1
    n = min(n_kaiser, n_delay)
    n += 1 - n % 2  # odd: the delay is a whole number of samples at the high rate
    n = min(n, n_delay)
    atten = min(atten_db, 2.285 * (n - 1) * dw + 7.95)
    t = np.arange(n) - (n - 1) / 2
    fc = nyquist / fs  # cycles per sample at the high rate
    h = 2 * fc * np.sinc(2 * fc * t) * np.kaiser(n, _kaiser_beta(atten))
    h *= up / h.sum()  # unity DC gain after zero-stuffing by `up`
    return h, up, down, atten


@lru_cache(maxsize=64)
def design_filter(in_rate: int, out_rate: int) -> FilterDesign:
    """The cached polyphase bank for one rate pair."""
    if in_rate <= 0 or out_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {in_rate} → {out_rate}")
    h, up, down, atten = prototype(in_rate, out_rate)
    n = len(h)
    k = -(-n // up)
    padded = np.zeros(k * up)
    padded[:n] = h
    # phase p uses h[p], h[p+up], … on x[i], x[i-1], …; store each row oldest-first for windowed dot products
    bank = padded.reshape(k, up).T[:, ::-1]
    bank = np.ascontiguousarray(np.rint(bank * 2.0**SCALE_BITS) * 2.0**-SCALE_BITS)
    bank.setflags(write=False)
    return FilterDesign(
        in_rate=in_rate,
        out_rate=out_rate,
        up=up,
        down=down,
        num_taps=n,
        atten_db=atten,
        bank=bank,
        delay_s=(n - 1) / 2 / (in_rate * up),
    )
