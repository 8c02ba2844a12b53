"""G.711 μ-law: bit-exact with a scalar port of ITU-T G.191, on every input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebridge.media.audio import g711
from voicebridge.media.audio.g711 import ULAW_SILENCE, ulaw_decode, ulaw_encode, ulaw_encode_array


def g191_compress(x: int) -> int:
    """ITU-T G.191 STL `ulaw_compress`, one sample, transcribed literally (1's complement for negatives)."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high = 0x0008 - segno
    low = 0x000F - ((absno >> segno) & 0x000F)
    code = (high << 4) | low
    if x >= 0:
        code |= 0x0080
    return code


def g191_expand(code: int) -> int:
    """ITU-T G.191 STL `ulaw_expand`, one code."""
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def step_size(code: int) -> int:
    """Quantisation step (int16 units) of the segment a code lies in."""
    return 4 << (((~code >> 4) & 0x07) + 1)


def test_decode_matches_g191_for_all_256_codes() -> None:
    pcm = np.frombuffer(ulaw_decode(bytes(range(256))), dtype="<i2")
    assert pcm.tolist() == [g191_expand(c) for c in range(256)]


def test_numpy_decoder_matches_g191_even_when_audioop_is_used() -> None:
    pcm = np.frombuffer(g711._numpy_decode(bytes(range(256))), dtype="<i2")
    assert pcm.tolist() == [g191_expand(c) for c in range(256)]


def test_encode_matches_g191_for_all_65536_inputs() -> None:
    x = np.arange(-32768, 32768, dtype=np.int64)
    codes = np.frombuffer(ulaw_encode(x.astype("<i2").tobytes()), dtype=np.uint8)
    assert codes.tolist() == [g191_compress(int(v)) for v in x]


def test_round_trip_error_over_all_inputs_is_the_g191_maximum() -> None:
    x = np.arange(-32768, 32768, dtype=np.int64)
    y = np.frombuffer(ulaw_decode(ulaw_encode(x.astype("<i2").tobytes())), dtype="<i2")
    assert int(np.max(np.abs(y - x))) == 644  # the clipped full-scale negative end


@given(st.integers(min_value=-32768, max_value=32767))
def test_round_trip_error_never_exceeds_the_segment_step(x: int) -> None:
    code = ulaw_encode(np.array([x], dtype="<i2").tobytes())[0]
    y = int(np.frombuffer(ulaw_decode(bytes([code])), dtype="<i2")[0])
    assert abs(y - x) <= step_size(code)


def test_silence_code_is_zero_and_zero_encodes_to_it() -> None:
    assert ulaw_decode(bytes([ULAW_SILENCE])) == b"\x00\x00"
    assert ulaw_encode(b"\x00\x00") == bytes([ULAW_SILENCE])


@pytest.mark.parametrize(
    ("sample", "code"),
    [(32767, 0x80), (32124, 0x80), (-32768, 0x00), (-32124, 0x00), (-1, 0x7F), (0, 0xFF), (1, 0xFF)],
)
def test_full_scale_and_edge_samples(sample: int, code: int) -> None:
    assert ulaw_encode(np.array([sample], dtype="<i2").tobytes()) == bytes([code])
    assert code == g191_compress(sample)


def test_empty_input_gives_empty_output() -> None:
    assert ulaw_decode(b"") == b""
    assert ulaw_encode(b"") == b""


def test_encode_rejects_a_torn_sample() -> None:
    with pytest.raises(ValueError, match="whole int16"):
        ulaw_encode(b"\x00\x01\x02")


def test_encode_accepts_any_bytes_like_buffer() -> None:
    pcm = np.array([0, 1000, -1000], dtype="<i2").tobytes()
    assert ulaw_encode(bytearray(pcm)) == ulaw_encode(memoryview(pcm)) == ulaw_encode(pcm)


def test_encode_array_equals_encode_bytes() -> None:
    x = np.arange(-32768, 32768, 7, dtype="<i2")
    assert ulaw_encode_array(x) == ulaw_encode(x.tobytes())
