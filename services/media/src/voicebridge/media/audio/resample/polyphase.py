"""Stateful polyphase FIR resampler: rational up/down with exact integer sample bookkeeping.

Output k is the filtered, zero-stuffed input at high-rate instant k·down; it needs inputs up to
i = ⌊k·down/up⌋ and uses filter phase k·down mod up. After n inputs exactly ⌈n·up/down⌉ outputs exist, so
a stream never drifts, and each output depends only on earlier input, so chunking cannot change it.

Why it is shaped like this: per-chunk cost is numpy call overhead plus the multiply-adds, and only BLAS
does the latter fast. So every ratio is one product of a contiguous copy of overlapping input rows with
a small banded matrix: decimation rows yield BLOCK outputs, interpolation rows BLOCK·up outputs, and
other ratios one cycle (up outputs per down inputs) per row. Outputs past the newest input are computed
from stale-but-finite buffer samples and discarded. Products stay below OpenBLAS's threading threshold,
so no worker threads wake (they would spin and burn CPU).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from voicebridge.media.audio.resample.design import design_filter

__all__ = ["PolyphaseResampler"]

_ITEM = 8  # float64 bytes
_BLOCK = 16
_MAX_MACS = 200_000  # per product; OpenBLAS goes multi-threaded above 65 536 × 4
_EMPTY = np.zeros(0, dtype="<i2")
_EMPTY.setflags(write=False)
# the clip ufunc itself: np.clip's Python wrapper costs ~1.5 µs per call, more than the work
_clip = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None) or np.clip


@lru_cache(maxsize=64)
def _row_matrix(in_rate: int, out_rate: int) -> tuple[np.ndarray, int, int]:
    """(matrix (width, outputs per row), input stride between rows, outputs per row) for one rate pair.

    Column c holds the taps of output c of a row at the input offset where that output's window starts.
    """
    d = design_filter(in_rate, out_rate)
    up, down, bank = d.up, d.down, d.bank
    k = bank.shape[1]
    if up == 1:  # decimation: BLOCK outputs, each `down` inputs after the previous
        offsets, phases, stride = np.arange(_BLOCK) * down, np.zeros(_BLOCK, dtype=int), _BLOCK * down
    elif down == 1:  # interpolation: BLOCK inputs, `up` outputs each
        offsets, phases, stride = np.repeat(np.arange(_BLOCK), up), np.tile(np.arange(up), _BLOCK), _BLOCK
    else:  # one cycle: up outputs over down inputs
        offsets, phases = np.divmod(np.arange(up) * down, up)
        stride = down
    m = np.zeros((int(offsets[-1]) + k, len(offsets)))
    for col, (off, ph) in enumerate(zip(offsets.tolist(), phases.tolist(), strict=True)):
        m[off : off + k, col] = bank[ph]
    m.setflags(write=False)
    return m, stride, len(offsets)


class PolyphaseResampler:
    """int16 LE mono `in_rate` → `out_rate`; see the Resampler protocol."""

    __slots__ = (
        "_buf",
        "_down",
        "_hist",
        "_k",
        "_matrix",
        "_max_rows",
        "_n_in",
        "_n_out",
        "_per_row",
        "_slack",
        "_stride",
        "_up",
        "_width",
        "delay_s",
        "design",
    )

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.design = design_filter(in_rate, out_rate)
        self._up = up = self.design.up
        self._down = down = self.design.down
        self._k = k = self.design.bank.shape[1]
        self._matrix, self._stride, self._per_row = _row_matrix(in_rate, out_rate)
        self._width = self._matrix.shape[0]
        self._max_rows = max(1, _MAX_MACS // self._matrix.size)
        # history: a row (a cycle, for rational ratios) may start up to `down` inputs before the chunk
        self._hist = k - 1 + (down if up > 1 and down > 1 else 0)
        self._slack = self._width + self._stride * 2
        self.delay_s = self.design.delay_s
        self._buf = np.zeros(self._hist + 2048 + self._slack)
        self.reset()

    def reset(self) -> None:
        # buf[:hist] holds the newest `hist` input samples, zero at the start of a stream
        self._buf[: self._hist] = 0.0
        # counts since the last whole cycle (up outputs per down inputs); n_in may dip below 0
        self._n_in = 0
        self._n_out = 0

    def process(self, pcm: bytes) -> bytes:
        return self.process_array(pcm).tobytes()

    def process_array(self, pcm: bytes) -> np.ndarray:
        """Like `process`, returning the int16 samples as an array (saves a copy when encoding next)."""
        size = len(pcm)
        if size & 1:
            raise ValueError(f"PCM must hold whole int16 samples, got {size} bytes")
        if size == 0:
            return _EMPTY
        n = size >> 1
        up, down, h = self._up, self._down, self._hist
        used = h + n
        buf = self._buf
        if used + self._slack > len(buf):
            grown = np.zeros(used + self._slack + 2048)
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
            # buf index where output 0's window starts (input -(k-1)); buf[h] is input n_in
            base = h - (self._k - 1) - n_in
            if up == 1:
                first, skip = base + n_out * down, 0
            elif down == 1:
                first, skip = base, 0
            else:
                first, skip = base, n_out
            rows = -(-(count + skip) // self._per_row)
            x = np.ndarray((rows, self._width), np.float64, buf, first * _ITEM, (self._stride * _ITEM, _ITEM))
            if rows <= self._max_rows:
                y = (x.copy() @ self._matrix).ravel()
            else:
                y = np.empty((rows, self._per_row))
                for r in range(0, rows, self._max_rows):
                    np.matmul(x[r : r + self._max_rows].copy(), self._matrix, out=y[r : r + self._max_rows])
                y = y.ravel()
            y = y[skip : skip + count]
        buf[:h] = buf[n:used]
        done = total_out // up
        self._n_out = total_out - done * up
        self._n_in = total_in - done * down
        if y is None:
            return _EMPTY
        _clip(y, -32768.0, 32767.0, out=y)
        np.rint(y, out=y)
        return y.astype("<i2")
