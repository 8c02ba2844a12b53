from voicebridge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CallRequest(_message.Message):
    __slots__ = ("start", "audio", "mark", "dtmf", "stop", "transfer_result")
    START_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_RESULT_FIELD_NUMBER: _ClassVar[int]
    start: CallStart
    audio: CallerAudio
    mark: MarkEcho
    dtmf: _common_pb2.DtmfDigit
    stop: _common_pb2.CallEnd
    transfer_result: _common_pb2.TransferResult
    def __init__(self, start: _Optional[_Union[CallStart, _Mapping]] = ..., audio: _Optional[_Union[CallerAudio, _Mapping]] = ..., mark: _Optional[_Union[MarkEcho, _Mapping]] = ..., dtmf: _Optional[_Union[_common_pb2.DtmfDigit, _Mapping]] = ..., stop: _Optional[_Union[_common_pb2.CallEnd, _Mapping]] = ..., transfer_result: _Optional[_Union[_common_pb2.TransferResult, _Mapping]] = ...) -> None: ...

class CallStart(_message.Message):
    __slots__ = ("call", "call_secret", "reattach")
    CALL_FIELD_NUMBER: _ClassVar[int]
    CALL_SECRET_FIELD_NUMBER: _ClassVar[int]
    REATTACH_FIELD_NUMBER: _ClassVar[int]
    call: _common_pb2.CallInfo
    call_secret: bytes
    reattach: CallReattach
    def __init__(self, call: _Optional[_Union[_common_pb2.CallInfo, _Mapping]] = ..., call_secret: _Optional[bytes] = ..., reattach: _Optional[_Union[CallReattach, _Mapping]] = ...) -> None: ...

class CallReattach(_message.Message):
    __slots__ = ("sent",)
    SENT_FIELD_NUMBER: _ClassVar[int]
    sent: _common_pb2.PlaybackPosition
    def __init__(self, sent: _Optional[_Union[_common_pb2.PlaybackPosition, _Mapping]] = ...) -> None: ...

class CallerAudio(_message.Message):
    __slots__ = ("payload", "timestamp_ms", "received_unix_nanos")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    timestamp_ms: int
    received_unix_nanos: int
    def __init__(self, payload: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ..., received_unix_nanos: _Optional[int] = ...) -> None: ...

class MarkEcho(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CallResponse(_message.Message):
    __slots__ = ("audio", "clear", "hangup", "transfer", "transcript", "end", "error")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    audio: PlayAudio
    clear: ClearAudio
    hangup: _common_pb2.HangUp
    transfer: _common_pb2.TransferCall
    transcript: _common_pb2.Transcript
    end: _common_pb2.CallEnd
    error: _common_pb2.Error
    def __init__(self, audio: _Optional[_Union[PlayAudio, _Mapping]] = ..., clear: _Optional[_Union[ClearAudio, _Mapping]] = ..., hangup: _Optional[_Union[_common_pb2.HangUp, _Mapping]] = ..., transfer: _Optional[_Union[_common_pb2.TransferCall, _Mapping]] = ..., transcript: _Optional[_Union[_common_pb2.Transcript, _Mapping]] = ..., end: _Optional[_Union[_common_pb2.CallEnd, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class PlayAudio(_message.Message):
    __slots__ = ("payload", "mark", "source_unix_nanos", "position")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    SOURCE_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    mark: str
    source_unix_nanos: int
    position: _common_pb2.PlaybackPosition
    def __init__(self, payload: _Optional[bytes] = ..., mark: _Optional[str] = ..., source_unix_nanos: _Optional[int] = ..., position: _Optional[_Union[_common_pb2.PlaybackPosition, _Mapping]] = ...) -> None: ...

class ClearAudio(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CallManyRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CallManyRequestItem]
    def __init__(self, items: _Optional[_Iterable[_Union[CallManyRequestItem, _Mapping]]] = ...) -> None: ...

class CallManyRequestItem(_message.Message):
    __slots__ = ("call", "request", "signal")
    CALL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    call: int
    request: CallRequest
    signal: _common_pb2.StreamSignal
    def __init__(self, call: _Optional[int] = ..., request: _Optional[_Union[CallRequest, _Mapping]] = ..., signal: _Optional[_Union[_common_pb2.StreamSignal, str]] = ...) -> None: ...

class CallManyResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CallManyResponseItem]
    def __init__(self, items: _Optional[_Iterable[_Union[CallManyResponseItem, _Mapping]]] = ...) -> None: ...

class CallManyResponseItem(_message.Message):
    __slots__ = ("call", "response", "status")
    CALL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    call: int
    response: CallResponse
    status: _common_pb2.StreamStatus
    def __init__(self, call: _Optional[int] = ..., response: _Optional[_Union[CallResponse, _Mapping]] = ..., status: _Optional[_Union[_common_pb2.StreamStatus, _Mapping]] = ...) -> None: ...

class CallerAudioColumns(_message.Message):
    __slots__ = ("calls", "lengths", "payloads", "timestamps_ms", "received_unix_nanos")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedScalarFieldContainer[int]
    lengths: _containers.RepeatedScalarFieldContainer[int]
    payloads: bytes
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    received_unix_nanos: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, calls: _Optional[_Iterable[int]] = ..., lengths: _Optional[_Iterable[int]] = ..., payloads: _Optional[bytes] = ..., timestamps_ms: _Optional[_Iterable[int]] = ..., received_unix_nanos: _Optional[_Iterable[int]] = ...) -> None: ...

class PlayAudioColumns(_message.Message):
    __slots__ = ("calls", "lengths", "payloads", "source_unix_nanos", "position_response_ids", "position_offsets_us", "mark_frames", "marks")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    POSITION_RESPONSE_IDS_FIELD_NUMBER: _ClassVar[int]
    POSITION_OFFSETS_US_FIELD_NUMBER: _ClassVar[int]
    MARK_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedScalarFieldContainer[int]
    lengths: _containers.RepeatedScalarFieldContainer[int]
    payloads: bytes
    source_unix_nanos: _containers.RepeatedScalarFieldContainer[int]
    position_response_ids: _containers.RepeatedScalarFieldContainer[int]
    position_offsets_us: _containers.RepeatedScalarFieldContainer[int]
    mark_frames: _containers.RepeatedScalarFieldContainer[int]
    marks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, calls: _Optional[_Iterable[int]] = ..., lengths: _Optional[_Iterable[int]] = ..., payloads: _Optional[bytes] = ..., source_unix_nanos: _Optional[_Iterable[int]] = ..., position_response_ids: _Optional[_Iterable[int]] = ..., position_offsets_us: _Optional[_Iterable[int]] = ..., mark_frames: _Optional[_Iterable[int]] = ..., marks: _Optional[_Iterable[str]] = ...) -> None: ...

class CallBatchRequest(_message.Message):
    __slots__ = ("items", "item_positions", "audio")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEM_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CallManyRequestItem]
    item_positions: _containers.RepeatedScalarFieldContainer[int]
    audio: CallerAudioColumns
    def __init__(self, items: _Optional[_Iterable[_Union[CallManyRequestItem, _Mapping]]] = ..., item_positions: _Optional[_Iterable[int]] = ..., audio: _Optional[_Union[CallerAudioColumns, _Mapping]] = ...) -> None: ...

class CallBatchResponse(_message.Message):
    __slots__ = ("items", "item_positions", "audio")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEM_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CallManyResponseItem]
    item_positions: _containers.RepeatedScalarFieldContainer[int]
    audio: PlayAudioColumns
    def __init__(self, items: _Optional[_Iterable[_Union[CallManyResponseItem, _Mapping]]] = ..., item_positions: _Optional[_Iterable[int]] = ..., audio: _Optional[_Union[PlayAudioColumns, _Mapping]] = ...) -> None: ...
