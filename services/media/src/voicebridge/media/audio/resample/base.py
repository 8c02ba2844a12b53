"""The one interface every resampler implements, so the pipeline never cares which one it holds."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Resampler"]


@runtime_checkable
class Resampler(Protocol):
    """A stateful, streaming int16 LE mono resampler.

    `process` accepts chunks of any whole number of samples (including 0 and 1) and keeps its history
    across calls, so any chunking of a stream gives the same bytes as feeding it whole. An odd byte count
    is a caller bug (a torn sample) and raises ValueError; carrying a dangling byte is the converter's job.
    """

    #: Constant group delay this resampler adds to the signal, in seconds.
    delay_s: float

    def process(self, pcm: bytes) -> bytes:
        """Resample the next chunk of the stream; returns every output sample that is now computable."""
        ...

    def reset(self) -> None:
        """Forget the history (e.g. after a barge-in clear), as if the stream started again."""
        ...
