"""Stateful polyphase FIR resampler: rational up/down with exact integer sample bookkeeping.

Output k is the filtered, zero-stuffed input at high-rate instant k·down; it needs inputs up to
i = ⌊k·down/up⌋ and uses filter phase k·down mod up. After n inputs exactly ⌈n·up/down⌉ outputs exist, so
a stream never drifts, and each output depends only on earlier input, so chunking cannot change it.

Per-chunk cost is mostly numpy call overhead, so each ratio takes one product over a strided view of a
reused float64 buffer (no gathers, no large temporaries): decimation by M is one row-wise dot,
interpolation by L one small matrix product, and other ratios one product per cycle of `up` outputs with
a dense (span × up) matrix that holds every phase at its offset. Rows of a cycle that are not computable
yet read stale-but-finite buffer samples against zero taps and are discarded.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from voicebridge.media.audio.resample.design import SCALE_BITS, design_filter

__all__ = ["PolyphaseResampler"]

_ITEM = 8  # float64 bytes
_UNSCALE = 2.0**-SCALE_BITS
# the clip ufunc itself: np.clip's Python wrapper costs ~1.5 µs per call, more than the work
_clip = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None) or np.clip


@lru_cache(maxsize=64)
def _cycle_matrix(in_rate: int, out_rate: int) -> np.ndarray:
    """(span, up): column r holds phase (r·down mod up) at input offset ⌊r·down/up⌋ within one cycle."""
    design = design_filter(in_rate, out_rate)
    up, down, bank = design.up, design.down, design.bank
    k = bank.shape[1]
    r = np.arange(up)
    newest, phase = np.divmod(r * down, up)
    span = int(newest[-1]) + k
    m = np.zeros((up, span))
    for row, (off, ph) in enumerate(zip(newest.tolist(), phase.tolist(), strict=True)):
        m[row, off : off + k] = bank[ph]
    mt = np.ascontiguousarray(m.T)
    mt.setflags(write=False)
    return mt


class PolyphaseResampler:
    """int16 LE mono `in_rate` → `out_rate`; see the Resampler protocol."""

    __slots__ = (
        "_bank_t",
        "_buf",
        "_cycle_t",
        "_down",
        "_hist",
        "_k",
        "_n_in",
        "_n_out",
        "_span",
        "_tap0",
        "_up",
        "delay_s",
        "design",
    )

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.design = design_filter(in_rate, out_rate)
        self._up = up = self.design.up
        self._down = down = self.design.down
        bank = self.design.bank
        self._k = k = bank.shape[1]
        self._tap0 = bank[0]
        self._bank_t = np.ascontiguousarray(bank.T)
        if up > 1 and down > 1:
            self._cycle_t = _cycle_matrix(in_rate, out_rate)
            self._span = self._cycle_t.shape[0]
            self._hist = k - 1 + down  # a cycle may start up to `down` inputs before the new chunk
        else:
            self._cycle_t = self._bank_t
            self._span = k
            self._hist = k - 1
        self.delay_s = self.design.delay_s
        self._buf = np.zeros(self._hist + 2048 + self._span)
        self.reset()

    def reset(self) -> None:
        # buf[:hist] holds the newest `hist` input samples, zero at the start of a stream
        self._buf[: self._hist] = 0.0
        # counts since the last whole cycle (up outputs per down inputs); n_in may dip below 0
        self._n_in = 0
        self._n_out = 0

    def process(self, pcm: bytes) -> bytes:
        size = len(pcm)
        if size & 1:
            raise ValueError(f"PCM must hold whole int16 samples, got {size} bytes")
        if size == 0:
            return b""
        n = size >> 1
        up, down, k, h = self._up, self._down, self._k, self._hist
        used = h + n
        buf = self._buf
        if used + self._span > len(buf):
            grown = np.zeros(used + self._span + 2048)
            grown[:h] = buf[:h]
            self._buf = buf = grown
        buf[h:used] = np.frombuffer(pcm, dtype="<i2")
        n_in = self._n_in
        n_out = self._n_out
        total_in = n_in + n
        total_out = -((-total_in * up) // down)
        count = total_out - n_out
        y = None
        if count > 0:
            # buf index of the first sample of output 0's window: input -(k-1), with buf[h] = input n_in
            base = h - (k - 1) - n_in
            if up == 1:
                start = (base + n_out * down) * _ITEM
                windows = np.ndarray((count, k), np.float64, buf, start, (down * _ITEM, _ITEM))
                y = np.vecdot(windows, self._tap0)
            elif down == 1:
                windows = np.ndarray((n, k), np.float64, buf, base * _ITEM, (_ITEM, _ITEM))
                y = (windows @ self._bank_t).ravel()
            else:
                cycles = -(-total_out // up)
                x = np.ndarray((cycles, self._span), np.float64, buf, base * _ITEM, (down * _ITEM, _ITEM))
                y = (x @ self._cycle_t).ravel()[n_out:total_out]
        buf[:h] = buf[n:used]
        done = total_out // up
        self._n_out = total_out - done * up
        self._n_in = total_in - done * down
        if y is None:
            return b""
        np.multiply(y, _UNSCALE, out=y)
        np.rint(y, out=y)
        _clip(y, -32768.0, 32767.0, out=y)
        return y.astype("<i2").tobytes()
