"""Audio frames of many calls as the columns of one message (CallerAudioColumns, PlayAudioColumns,
AudioChunkColumns): pure encode/decode, no I/O.

A column layout names the columns message, its blob and its number columns, in the order a frame's
fields come (`fields` of a message, the frame class's arguments). Encoding transposes the frames
(one `zip`, one `join`), leaving out number columns that are 0 throughout; decoding cuts the blob
and builds the frame objects with one `map`, so neither side touches a protobuf object per frame."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import Any

from voicebridge.v1 import agent_pb2, media_pb2

from .frames import AgentChunkFrame, AudioChunkFrame, CallerAudioFrame, CallerChunkFrame, PlayAudioFrame

Fields = tuple[Any, ...]  # a frame's blob part first, then its number columns, then (if any) its mark


class MalformedColumns(ValueError):
    """The columns disagree with each other: nothing in them can be trusted."""


@dataclass(frozen=True)
class Layout:
    """How one kind of audio message is laid out as columns."""

    columns: type  # the columns message class
    blob: str  # the bytes field holding every frame's audio
    numbers: tuple[str, ...]  # the number columns, in the frame's field order after the blob
    frame: Callable[..., Any]  # builds the frame object: (blob part, *numbers[, mark])
    fields: Callable[[Any], Fields | None]  # a message's (or frame's) fields; None: not a column frame
    marked: bool = False  # PlayAudio: a sparse string column (mark_frames, marks) after the numbers

    def encode(self, calls: Sequence[int], frames: Sequence[Fields]) -> Any:
        """The columns message of `frames` (each one `fields` result), frame i of call calls[i]."""
        columns = list(zip(*frames, strict=True))
        blobs = columns[0]
        kwargs: dict[str, Any] = {
            name: column for name, column in zip(self.numbers, columns[1:], strict=False) if any(column)
        }
        if self.marked:
            marks = columns[-1]
            if any(marks):
                kwargs["mark_frames"] = [i for i, mark in enumerate(marks) if mark]
                kwargs["marks"] = [mark for mark in marks if mark]
        return self.columns(
            calls=calls, lengths=[len(b) for b in blobs], **{self.blob: b"".join(blobs)}, **kwargs
        )

    def decode(self, columns: Any) -> tuple[list[int], list[Any]]:
        """The call numbers and frame objects of a columns message; MalformedColumns (naming nothing
        about the audio) when its columns disagree."""
        calls = list(columns.calls)
        n = len(calls)
        lengths = columns.lengths
        if len(lengths) != n:
            raise MalformedColumns(f"{len(lengths)} lengths for {n} frames")
        blob = getattr(columns, self.blob)
        ends = list(accumulate(lengths))
        if (ends[-1] if ends else 0) != len(blob):
            raise MalformedColumns(f"the lengths add up to {ends[-1] if ends else 0}, not {len(blob)} bytes")
        numbers: list[Any] = []
        for name in self.numbers:
            column = getattr(columns, name)
            if not column:
                numbers.append(repeat(0, n))
            elif len(column) != n:
                raise MalformedColumns(f"{len(column)} {name} for {n} frames")
            else:
                numbers.append(column)
        starts = [0, *ends[:-1]] if ends else []
        frames = list(map(self.frame, [blob[s:e] for s, e in zip(starts, ends, strict=True)], *numbers))
        if self.marked:
            self._decode_marks(columns, frames)
        return calls, frames

    @staticmethod
    def _decode_marks(columns: Any, frames: list[Any]) -> None:
        indexes, names = columns.mark_frames, columns.marks
        if len(indexes) != len(names):
            raise MalformedColumns(f"{len(indexes)} mark_frames for {len(names)} marks")
        last = -1
        for index, name in zip(indexes, names, strict=True):
            if not last < index < len(frames):
                raise MalformedColumns(f"mark frame {index} out of order or past the frames")
            frames[index].mark = name
            last = index


def _caller_audio(message: Any) -> Fields | None:
    if type(message) is CallerAudioFrame:
        return (message.payload, message.timestamp_ms, message.received_unix_nanos)
    if type(message) is media_pb2.CallRequest and message.WhichOneof("event") == "audio":
        audio = message.audio
        return (audio.payload, audio.timestamp_ms, audio.received_unix_nanos)
    return None


def _play_audio(message: Any) -> Fields | None:
    if type(message) is PlayAudioFrame:
        m = message
        return (m.payload, m.source_unix_nanos, m.position_response_id, m.position_offset_us, m.mark)
    if type(message) is media_pb2.CallResponse and message.WhichOneof("event") == "audio":
        audio = message.audio
        position = audio.position
        if audio.HasField("position") and not position.response_id:
            return None  # a position before any agent audio: only an item can say it
        return (audio.payload, audio.source_unix_nanos, position.response_id, position.offset_us, audio.mark)
    return None


def _chunk_fields(
    frame_type: type[AudioChunkFrame],
    message_type: type[agent_pb2.ConverseRequest] | type[agent_pb2.ConverseResponse],
) -> Callable[[Any], Fields | None]:
    def fields(m: Any) -> Fields | None:
        if type(m) is frame_type:
            rx = m.received_unix_nanos
            return (m.data, m.encoding, m.sample_rate_hz, m.response_id, m.timestamp_ms, rx)
        if type(m) is message_type and m.WhichOneof("event") == "audio":
            c = m.audio
            if c.HasField("alignment"):
                return None  # the rare rich chunk travels as an item
            f = c.format
            rx = c.received_unix_nanos
            return (c.data, f.encoding, f.sample_rate_hz, c.response_id, c.timestamp_ms, rx)
        return None

    return fields


_CHUNK_NUMBERS = ("encodings", "sample_rates_hz", "response_ids", "timestamps_ms", "received_unix_nanos")

CALLER_AUDIO = Layout(
    media_pb2.CallerAudioColumns,
    "payloads",
    ("timestamps_ms", "received_unix_nanos"),
    CallerAudioFrame,
    _caller_audio,
)
PLAY_AUDIO = Layout(
    media_pb2.PlayAudioColumns,
    "payloads",
    ("source_unix_nanos", "position_response_ids", "position_offsets_us"),
    PlayAudioFrame,
    _play_audio,
    marked=True,
)
CALLER_CHUNKS = Layout(
    agent_pb2.AudioChunkColumns,
    "data",
    _CHUNK_NUMBERS,
    CallerChunkFrame,
    _chunk_fields(CallerChunkFrame, agent_pb2.ConverseRequest),
)
AGENT_CHUNKS = Layout(
    agent_pb2.AudioChunkColumns,
    "data",
    _CHUNK_NUMBERS,
    AgentChunkFrame,
    _chunk_fields(AgentChunkFrame, agent_pb2.ConverseResponse),
)
