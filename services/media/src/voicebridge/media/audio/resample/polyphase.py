"""Stateful polyphase FIR resampler: rational up/down with exact integer sample bookkeeping.

Output k is the filtered, zero-stuffed input at high-rate instant k·down; it needs inputs up to
i = ⌊k·down/up⌋ and uses filter phase k·down mod up. After n inputs exactly ⌈n·up/down⌉ outputs exist, so
a stream never drifts, and each output depends only on earlier input, so chunking cannot change it.
Integer ratios take a single strided matrix product; other ratios gather one window per output.
"""

from __future__ import annotations

import numpy as np

from voicebridge.media.audio.resample.design import SCALE_BITS, design_filter

__all__ = ["PolyphaseResampler"]

_ITEM = 8  # float64 bytes
_UNSCALE = 2.0**-SCALE_BITS


class PolyphaseResampler:
    """int16 LE mono `in_rate` → `out_rate`; see the Resampler protocol."""

    __slots__ = ("_bank", "_bank_t", "_down", "_hist", "_k", "_n_in", "_n_out", "_up", "delay_s", "design")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.design = design_filter(in_rate, out_rate)
        self._up = self.design.up
        self._down = self.design.down
        self._bank = self.design.bank
        self._bank_t = np.ascontiguousarray(self._bank.T)
        self._k = self._bank.shape[1]
        self.delay_s = self.design.delay_s
        self.reset()

    def reset(self) -> None:
        self._hist = np.zeros(self._k - 1)
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
        up, down, k = self._up, self._down, self._k
        buf = np.concatenate((self._hist, np.frombuffer(pcm, dtype="<i2")))
        n_in = self._n_in
        n_out = self._n_out
        total_in = n_in + n
        total_out = -((-total_in * up) // down)
        count = total_out - n_out
        if count <= 0:
            y = None
        elif up == 1:
            start = n_out * down - n_in
            windows = np.ndarray((count, k), np.float64, buf, start * _ITEM, (down * _ITEM, _ITEM))
            y = windows @ self._bank[0]
        elif down == 1:
            windows = np.ndarray((n, k), np.float64, buf, 0, (_ITEM, _ITEM))
            y = (windows @ self._bank_t).ravel()
        else:
            t = np.arange(n_out, total_out) * down
            newest, phase = np.divmod(t, up)
            windows = np.ndarray((len(buf) - k + 1, k), np.float64, buf, 0, (_ITEM, _ITEM))
            y = np.einsum("ij,ij->i", windows[newest - n_in], self._bank[phase])
        self._hist = buf[len(buf) - (k - 1) :]
        cycles = total_out // up
        self._n_out = total_out - cycles * up
        self._n_in = total_in - cycles * down
        if y is None:
            return b""
        y *= _UNSCALE
        np.rint(y, out=y)
        np.clip(y, -32768.0, 32767.0, out=y)
        return y.astype("<i2").tobytes()
