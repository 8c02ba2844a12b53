"""The call secret: the same on every edge that shares the key, different per call and per key."""

from voicebridge.edge.call_secret import call_secret

KEY = "k" * 40


def test_every_edge_with_the_same_key_derives_the_same_secret() -> None:
    assert call_secret(KEY, "CA" + "1" * 32) == call_secret(KEY, "CA" + "1" * 32)


def test_the_secret_differs_per_call_and_per_key() -> None:
    one, other = "CA" + "1" * 32, "CA" + "2" * 32
    assert call_secret(KEY, one) != call_secret(KEY, other)
    assert call_secret(KEY, one) != call_secret("j" * 40, one)
    assert len(call_secret(KEY, one)) == 32
