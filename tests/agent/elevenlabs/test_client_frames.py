"""client_frames.py: every frame it builds is the one `websockets` itself would send with that
masking key (byte for byte) and parses back as a server would read it, across the three length
encodings; masking keys are consecutive, never reused slices of os.urandom, refilled when a pool runs out."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from voicebridge.agent.backends.elevenlabs.client_frames import MaskKeys, masked_text_frame

MASK = b"\x12\x34\xab\xcd"


def _parse_as_server(wire: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(wire)
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("frame incomplete")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 1000, 65535, 65536, 70000])
def test_a_frame_is_the_librarys_own_and_a_server_reads_the_text_back(
    length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(i % 251 for i in range(length))
    monkeypatch.setattr("websockets.frames.secrets.token_bytes", lambda n: MASK)
    assert masked_text_frame(data, MASK) == Frame(Opcode.TEXT, data).serialize(mask=True)
    frame = _parse_as_server(masked_text_frame(data, MASK))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, data)


def test_masking_keys_are_unused_slices_of_urandom_refilled_when_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools: list[bytes] = []

    def urandom(n: int) -> bytes:
        pools.append(bytes((len(pools) * 64 + i) % 256 for i in range(n)))
        return pools[-1]

    monkeypatch.setattr("voicebridge.agent.backends.elevenlabs.client_frames.os.urandom", urandom)
    keys = MaskKeys(pool_keys=4)
    drawn = [keys.next() for _ in range(10)]
    assert len(pools) == 3  # 4 + 4 + 2 keys: a pool is drawn only when the last one is spent
    assert drawn == [pool[i : i + 4] for pool in pools for i in range(0, 16, 4)][:10]
