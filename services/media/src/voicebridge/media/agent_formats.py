"""The audio formats an agent session chose (its SessionReady), and the two conversions they need.

Why its own module: the call offers every format media supports and the agent picks one each way;
from then on caller audio (8 kHz μ-law from the edge) is converted to the agent's input format, and the
agent's audio to 8 kHz μ-law for the caller. A new agent session (after the agent's stream failed)
may choose again, so the call replaces this object on every SessionReady.
"""

from __future__ import annotations

from voicebridge.runtime.mux import CallerChunkFrame
from voicebridge.v1 import agent_pb2, media_pb2

from .audio.convert import AgentAudioConverter, CallerAudioConverter, Format
from .audio.g711 import ulaw_decode


class AgentFormats:
    def __init__(self, ready: agent_pb2.SessionReady) -> None:
        """Raises UnsupportedFormatError or ValueError for a format media cannot convert."""
        self.caller = Format.from_proto(ready.input_format)
        self.agent = Format.from_proto(ready.output_format)
        self._in = CallerAudioConverter(self.caller)
        caller = self.caller.to_proto()
        self._caller_format = (caller.encoding, caller.sample_rate_hz)
        self._out = AgentAudioConverter(self.agent)

    def caller_chunk(self, audio: media_pb2.CallerAudio, pcm: bytes | None) -> CallerChunkFrame:
        """Caller audio in the agent's input format, as the ConverseRequest that carries it (a frame
        object: no protobuf is built for it on a batch stream); `pcm` is its decoded payload, if
        already at hand."""
        if self.caller.encoding == "mulaw":
            data = self._in.convert(audio.payload)
        else:
            data = self._in.convert_decoded(pcm if pcm is not None else ulaw_decode(audio.payload))
        encoding, rate = self._caller_format
        return CallerChunkFrame(data, encoding, rate, 0, audio.timestamp_ms, audio.received_unix_nanos)

    def agent_ms(self, chunk: agent_pb2.AudioChunk) -> float:
        """How long the agent's chunk plays."""
        return len(chunk.data) * 1000.0 / self.agent.bytes_per_second

    def agent_ulaw(self, data: bytes) -> bytes:
        """The agent's audio as 8 kHz μ-law for the caller."""
        return self._out.convert(data)

    def reset_agent(self) -> None:
        """After a clear: forget resampler history so nothing of the cut-off reply leaks out."""
        self._out.reset()
