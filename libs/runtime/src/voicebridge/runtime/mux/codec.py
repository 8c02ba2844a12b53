"""One direction of a multiplexed stream as pure encode/decode: call entries to a batch message and back.

An entry is `(call number, value)`: a call's message (a protobuf message or a `frames` object), a
stream signal (an int: HALF_CLOSE, CANCEL; client to server) or a StreamStatus (server to client).
`ItemCodec` speaks the *Many RPCs (one item per entry); `ColumnCodec` the *Batch RPCs (audio frames as
columns, the other entries as the same items, placed among the frames). Decoding gives
`(number, kind, value)` in the order sent; kind BAD carries the reason an entry cannot be used, which
ends that call only (a batch whose columns disagree ends every call it names)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from voicebridge.v1 import agent_pb2, common_pb2, media_pb2

from .columns import AGENT_CHUNKS, CALLER_AUDIO, CALLER_CHUNKS, PLAY_AUDIO, Layout, MalformedColumns
from .frames import Frame

MESSAGE, SIGNAL, STATUS, BAD = range(4)
Entry = tuple[int, Any]
Decoded = tuple[int, int, Any]


@dataclass(frozen=True)
class ItemCodec:
    """One item per entry (CallManyRequest, ConverseManyResponse, ...). `message_field` is the item's
    field for a call's message ("request" or "response"), `end_field` the other ("signal" or "status")."""

    batch: type
    item: type
    message_field: str
    end_field: str

    def item_for(self, number: int, value: Any) -> Any:
        if type(value) is int or isinstance(value, common_pb2.StreamStatus):
            return self.item(call=number, **{self.end_field: value})
        if isinstance(value, Frame):
            value = value.to_proto()
        return self.item(call=number, **{self.message_field: value})

    def encode(self, entries: Sequence[Entry]) -> Any:
        return self.batch(items=[self.item_for(number, value) for number, value in entries])

    def decode_item(self, item: Any) -> Decoded:
        kind = item.WhichOneof("kind")
        if kind == self.message_field:
            return item.call, MESSAGE, getattr(item, kind)
        if kind == "signal":
            return item.call, SIGNAL, item.signal
        if kind == "status":
            return item.call, STATUS, item.status
        return item.call, BAD, "an item with neither a message nor a signal"

    def decode(self, batch: Any) -> list[Decoded]:
        return [self.decode_item(item) for item in batch.items]


@dataclass(frozen=True)
class ColumnCodec:
    """Audio frames as `layout`'s columns in the batch's `audio`, everything else as `items`'s items,
    each placed by `item_positions` among the frames."""

    batch: type
    items: ItemCodec
    layout: Layout

    def encode(self, entries: Sequence[Entry]) -> Any:
        calls: list[int] = []
        frames: list[Any] = []
        items: list[Any] = []
        positions: list[int] = []
        fields_of = self.layout.fields
        for number, value in entries:
            fields = None if type(value) is int else fields_of(value)
            if fields is not None:
                calls.append(number)
                frames.append(fields)
            else:
                items.append(self.items.item_for(number, value))
                positions.append(len(frames))
        if not frames:
            return self.batch(items=items, item_positions=positions)
        audio = self.layout.encode(calls, frames)
        if not items:
            return self.batch(audio=audio)
        return self.batch(items=items, item_positions=positions, audio=audio)

    def decode(self, batch: Any) -> list[Decoded]:
        items = batch.items
        try:
            calls, frames = self.layout.decode(batch.audio) if batch.HasField("audio") else ([], [])
            positions = _positions(batch.item_positions, len(items), len(frames))
        except MalformedColumns as exc:
            named = dict.fromkeys([*batch.audio.calls, *(item.call for item in items)])
            return [(number, BAD, f"malformed batch: {exc}") for number in named]
        if not items:
            return list(zip(calls, repeat(MESSAGE), frames))
        out: list[Decoded] = []
        done = 0
        for item, position in zip(items, positions, strict=True):
            if position > done:
                out.extend(zip(calls[done:position], repeat(MESSAGE), frames[done:position]))
                done = position
            out.append(self.items.decode_item(item))
        if done < len(frames):
            out.extend(zip(calls[done:], repeat(MESSAGE), frames[done:]))
        return out


def _positions(positions: Sequence[int], items: int, frames: int) -> Sequence[int]:
    if len(positions) != items:
        raise MalformedColumns(f"{len(positions)} item positions for {items} items")
    last = 0
    for position in positions:
        if not last <= position <= frames:
            raise MalformedColumns(f"item position {position} out of order or past the {frames} frames")
        last = position
    return positions


@dataclass(frozen=True)
class RpcCodec:
    """Both directions of one multiplexed RPC, named by what it adds to the per-call method's name."""

    requests: ItemCodec | ColumnCodec
    responses: ItemCodec | ColumnCodec
    suffix: str


_CALL_MANY_REQUESTS = ItemCodec(media_pb2.CallManyRequest, media_pb2.CallManyRequestItem, "request", "signal")
_CALL_MANY_RESPONSES = ItemCodec(
    media_pb2.CallManyResponse, media_pb2.CallManyResponseItem, "response", "status"
)
_CONVERSE_MANY_REQUESTS = ItemCodec(
    agent_pb2.ConverseManyRequest, agent_pb2.ConverseManyRequestItem, "request", "signal"
)
_CONVERSE_MANY_RESPONSES = ItemCodec(
    agent_pb2.ConverseManyResponse, agent_pb2.ConverseManyResponseItem, "response", "status"
)

CALL_MANY = RpcCodec(_CALL_MANY_REQUESTS, _CALL_MANY_RESPONSES, "Many")
CALL_BATCH = RpcCodec(
    ColumnCodec(media_pb2.CallBatchRequest, _CALL_MANY_REQUESTS, CALLER_AUDIO),
    ColumnCodec(media_pb2.CallBatchResponse, _CALL_MANY_RESPONSES, PLAY_AUDIO),
    "Batch",
)
CONVERSE_MANY = RpcCodec(_CONVERSE_MANY_REQUESTS, _CONVERSE_MANY_RESPONSES, "Many")
CONVERSE_BATCH = RpcCodec(
    ColumnCodec(agent_pb2.ConverseBatchRequest, _CONVERSE_MANY_REQUESTS, CALLER_CHUNKS),
    ColumnCodec(agent_pb2.ConverseBatchResponse, _CONVERSE_MANY_RESPONSES, AGENT_CHUNKS),
    "Batch",
)
