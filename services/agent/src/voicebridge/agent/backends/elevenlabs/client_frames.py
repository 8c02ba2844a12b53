"""Client-to-server WebSocket text frames (RFC 6455 §5.2), masked, built without `websockets`' Frame.

Why: the agent sends one masked text frame per 20 ms caller frame per call. `websockets` builds each
through a `Frame` object, a BytesIO and `secrets.token_bytes(4)`, which is a `getrandom` system call
per frame. Here the header is packed directly and the masking keys come from a pool filled from the
same source (`os.urandom`) a few kilobytes at a time: every key is still fresh and unpredictable,
as §5.3 requires, and none is reused. The masking itself is `websockets`' own (its C speedup).
Only for a single unfragmented frame with no extension negotiated (connection.py checks that).
"""

from __future__ import annotations

import os
import struct

from websockets.frames import apply_mask

_POOL_KEYS = 1024  # 4 KiB of randomness per refill


def masked_text_frame(data: bytes, mask: bytes) -> bytes:
    """One final text frame (FIN, opcode 1) from client to server, payload masked with `mask`."""
    length = len(data)
    if length < 126:
        head = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    return head + mask + apply_mask(data, mask)


class MaskKeys:
    """Fresh 4-byte masking keys from `os.urandom`, drawn a pool at a time instead of once per frame."""

    def __init__(self, pool_keys: int = _POOL_KEYS) -> None:
        self._size = 4 * pool_keys
        self._pool = b""
        self._at = 0

    def next(self) -> bytes:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(self._size), 0
        key = self._pool[self._at : self._at + 4]
        self._at += 4
        return key
