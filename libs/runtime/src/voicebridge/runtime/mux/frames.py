"""Audio frames as plain objects: what the per-call code reads and writes instead of a protobuf message
per frame on the batch streams (CallBatch, ConverseBatch).

Why: a frame is a few bytes of audio and two or three numbers; as a protobuf it is two nested
objects built by its producer, copied into a batch item, parsed again by the peer. These objects read
like the message they stand for (`WhichOneof("event") == "audio"`, `.audio.payload`,
`.audio.timestamp_ms`...), so the per-call code takes either, and `to_proto()` makes the real
message where one is needed (a per-call stream, a CallMany stream). Only the fields the hot path
uses are attributes; anything richer (a TextAlignment) travels as a real message."""

from __future__ import annotations

from typing import Any, cast

from voicebridge.v1 import agent_pb2, common_pb2, media_pb2


class Frame:
    """One audio message as a plain object; it is also its own `audio` event."""

    __slots__ = ()

    @property
    def audio(self) -> Any:
        return self

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802 - protobuf's name
        return "audio" if group == "event" else None

    def HasField(self, name: str) -> bool:  # noqa: N802 - protobuf's name
        return name == "audio"

    def to_proto(self) -> Any:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Frame):
            other = other.to_proto()
        return bool(self.to_proto() == other)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value like a message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_proto()!s})".replace("\n", " ")


class CallerAudioFrame(Frame):
    """`CallRequest{audio: CallerAudio{...}}` (edge -> media)."""

    __slots__ = ("payload", "received_unix_nanos", "timestamp_ms")

    def __init__(self, payload: bytes, timestamp_ms: int = 0, received_unix_nanos: int = 0) -> None:
        self.payload = payload
        self.timestamp_ms = timestamp_ms
        self.received_unix_nanos = received_unix_nanos

    def to_proto(self) -> media_pb2.CallRequest:
        return media_pb2.CallRequest(
            audio={
                "payload": self.payload,
                "timestamp_ms": self.timestamp_ms,
                "received_unix_nanos": self.received_unix_nanos,
            }
        )


class PlayAudioFrame(Frame):
    """`CallResponse{audio: PlayAudio{...}}` (media -> edge); `position` is set when
    `position_response_id` is not 0."""

    __slots__ = ("mark", "payload", "position_offset_us", "position_response_id", "source_unix_nanos")

    def __init__(
        self,
        payload: bytes,
        source_unix_nanos: int = 0,
        position_response_id: int = 0,
        position_offset_us: int = 0,
        mark: str = "",
    ) -> None:
        self.payload = payload
        self.source_unix_nanos = source_unix_nanos
        self.position_response_id = position_response_id
        self.position_offset_us = position_offset_us
        self.mark = mark

    @property
    def position(self) -> common_pb2.PlaybackPosition:
        return common_pb2.PlaybackPosition(
            response_id=self.position_response_id, offset_us=self.position_offset_us
        )

    def HasField(self, name: str) -> bool:  # noqa: N802 - protobuf's name
        return name == "audio" or (name == "position" and self.position_response_id != 0)

    def to_proto(self) -> media_pb2.CallResponse:
        audio = media_pb2.PlayAudio(
            payload=self.payload, mark=self.mark, source_unix_nanos=self.source_unix_nanos
        )
        if self.position_response_id:
            audio.position.response_id = self.position_response_id
            audio.position.offset_us = self.position_offset_us
        return media_pb2.CallResponse(audio=audio)


class AudioChunkFrame(Frame):
    """An AudioChunk without alignment; `CallerChunkFrame` and `AgentChunkFrame` say which way."""

    __slots__ = ("data", "encoding", "received_unix_nanos", "response_id", "sample_rate_hz", "timestamp_ms")

    def __init__(
        self,
        data: bytes,
        encoding: int = 0,
        sample_rate_hz: int = 0,
        response_id: int = 0,
        timestamp_ms: int = 0,
        received_unix_nanos: int = 0,
    ) -> None:
        self.data = data
        self.encoding = encoding
        self.sample_rate_hz = sample_rate_hz
        self.response_id = response_id
        self.timestamp_ms = timestamp_ms
        self.received_unix_nanos = received_unix_nanos

    @property
    def format(self) -> common_pb2.AudioFormat:
        encoding = cast(common_pb2.AudioEncoding, self.encoding)  # an enum's number, as parsed
        return common_pb2.AudioFormat(encoding=encoding, sample_rate_hz=self.sample_rate_hz)

    @property
    def alignment(self) -> agent_pb2.TextAlignment:
        return agent_pb2.TextAlignment()

    def HasField(self, name: str) -> bool:  # noqa: N802 - protobuf's name
        return name == "audio" or (name == "format" and bool(self.encoding or self.sample_rate_hz))

    def chunk(self) -> agent_pb2.AudioChunk:
        chunk = agent_pb2.AudioChunk(
            data=self.data,
            response_id=self.response_id,
            timestamp_ms=self.timestamp_ms,
            received_unix_nanos=self.received_unix_nanos,
        )
        if self.encoding or self.sample_rate_hz:
            chunk.format.encoding = cast(common_pb2.AudioEncoding, self.encoding)
            chunk.format.sample_rate_hz = self.sample_rate_hz
        return chunk


class CallerChunkFrame(AudioChunkFrame):
    """`ConverseRequest{audio: AudioChunk{...}}` (media -> agent)."""

    __slots__ = ()

    def to_proto(self) -> agent_pb2.ConverseRequest:
        return agent_pb2.ConverseRequest(audio=self.chunk())


class AgentChunkFrame(AudioChunkFrame):
    """`ConverseResponse{audio: AudioChunk{...}}` (agent -> media)."""

    __slots__ = ()

    def to_proto(self) -> agent_pb2.ConverseResponse:
        return agent_pb2.ConverseResponse(audio=self.chunk())


def as_proto(message: Any) -> Any:
    """The protobuf message itself, or the one a frame stands for."""
    return message.to_proto() if isinstance(message, Frame) else message
