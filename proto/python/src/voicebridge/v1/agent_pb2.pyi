from voicebridge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConverseRequest(_message.Message):
    __slots__ = ("start", "audio", "activity", "interrupted", "dtmf", "end", "transfer_result", "detach")
    START_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_RESULT_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    start: SessionStart
    audio: AudioChunk
    activity: VoiceActivity
    interrupted: CallerInterrupted
    dtmf: _common_pb2.DtmfDigit
    end: _common_pb2.CallEnd
    transfer_result: _common_pb2.TransferResult
    detach: Detach
    def __init__(self, start: _Optional[_Union[SessionStart, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., activity: _Optional[_Union[VoiceActivity, _Mapping]] = ..., interrupted: _Optional[_Union[CallerInterrupted, _Mapping]] = ..., dtmf: _Optional[_Union[_common_pb2.DtmfDigit, _Mapping]] = ..., end: _Optional[_Union[_common_pb2.CallEnd, _Mapping]] = ..., transfer_result: _Optional[_Union[_common_pb2.TransferResult, _Mapping]] = ..., detach: _Optional[_Union[Detach, _Mapping]] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("ready", "audio", "interruption", "transcript", "hangup", "transfer", "end", "error")
    READY_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTION_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ready: SessionReady
    audio: AudioChunk
    interruption: Interruption
    transcript: _common_pb2.Transcript
    hangup: _common_pb2.HangUp
    transfer: _common_pb2.TransferCall
    end: _common_pb2.CallEnd
    error: _common_pb2.Error
    def __init__(self, ready: _Optional[_Union[SessionReady, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., interruption: _Optional[_Union[Interruption, _Mapping]] = ..., transcript: _Optional[_Union[_common_pb2.Transcript, _Mapping]] = ..., hangup: _Optional[_Union[_common_pb2.HangUp, _Mapping]] = ..., transfer: _Optional[_Union[_common_pb2.TransferCall, _Mapping]] = ..., end: _Optional[_Union[_common_pb2.CallEnd, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class SessionStart(_message.Message):
    __slots__ = ("call", "input_formats", "output_formats", "resume", "call_secret", "attach")
    CALL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FORMATS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMATS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    CALL_SECRET_FIELD_NUMBER: _ClassVar[int]
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    call: _common_pb2.CallInfo
    input_formats: _containers.RepeatedCompositeFieldContainer[_common_pb2.AudioFormat]
    output_formats: _containers.RepeatedCompositeFieldContainer[_common_pb2.AudioFormat]
    resume: ResumeContext
    call_secret: bytes
    attach: SessionAttach
    def __init__(self, call: _Optional[_Union[_common_pb2.CallInfo, _Mapping]] = ..., input_formats: _Optional[_Iterable[_Union[_common_pb2.AudioFormat, _Mapping]]] = ..., output_formats: _Optional[_Iterable[_Union[_common_pb2.AudioFormat, _Mapping]]] = ..., resume: _Optional[_Union[ResumeContext, _Mapping]] = ..., call_secret: _Optional[bytes] = ..., attach: _Optional[_Union[SessionAttach, _Mapping]] = ...) -> None: ...

class SessionAttach(_message.Message):
    __slots__ = ("resume_from",)
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    resume_from: _common_pb2.PlaybackPosition
    def __init__(self, resume_from: _Optional[_Union[_common_pb2.PlaybackPosition, _Mapping]] = ...) -> None: ...

class Detach(_message.Message):
    __slots__ = ("heard",)
    HEARD_FIELD_NUMBER: _ClassVar[int]
    heard: _common_pb2.PlaybackPosition
    def __init__(self, heard: _Optional[_Union[_common_pb2.PlaybackPosition, _Mapping]] = ...) -> None: ...

class ResumeContext(_message.Message):
    __slots__ = ("turns", "response_floor")
    TURNS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FLOOR_FIELD_NUMBER: _ClassVar[int]
    turns: _containers.RepeatedCompositeFieldContainer[_common_pb2.Transcript]
    response_floor: int
    def __init__(self, turns: _Optional[_Iterable[_Union[_common_pb2.Transcript, _Mapping]]] = ..., response_floor: _Optional[int] = ...) -> None: ...

class SessionReady(_message.Message):
    __slots__ = ("input_format", "output_format", "conversation_id", "attached")
    INPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    input_format: _common_pb2.AudioFormat
    output_format: _common_pb2.AudioFormat
    conversation_id: str
    attached: bool
    def __init__(self, input_format: _Optional[_Union[_common_pb2.AudioFormat, _Mapping]] = ..., output_format: _Optional[_Union[_common_pb2.AudioFormat, _Mapping]] = ..., conversation_id: _Optional[str] = ..., attached: _Optional[bool] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("data", "format", "response_id", "timestamp_ms", "received_unix_nanos", "alignment")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    format: _common_pb2.AudioFormat
    response_id: int
    timestamp_ms: int
    received_unix_nanos: int
    alignment: TextAlignment
    def __init__(self, data: _Optional[bytes] = ..., format: _Optional[_Union[_common_pb2.AudioFormat, _Mapping]] = ..., response_id: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., received_unix_nanos: _Optional[int] = ..., alignment: _Optional[_Union[TextAlignment, _Mapping]] = ...) -> None: ...

class TextAlignment(_message.Message):
    __slots__ = ("chars", "char_start_ms", "char_duration_ms")
    CHARS_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_MS_FIELD_NUMBER: _ClassVar[int]
    CHAR_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    chars: _containers.RepeatedScalarFieldContainer[str]
    char_start_ms: _containers.RepeatedScalarFieldContainer[int]
    char_duration_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, chars: _Optional[_Iterable[str]] = ..., char_start_ms: _Optional[_Iterable[int]] = ..., char_duration_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class VoiceActivity(_message.Message):
    __slots__ = ("kind", "timestamp_ms")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[VoiceActivity.Kind]
        KIND_SPEECH_STARTED: _ClassVar[VoiceActivity.Kind]
        KIND_SPEECH_ENDED: _ClassVar[VoiceActivity.Kind]
    KIND_UNSPECIFIED: VoiceActivity.Kind
    KIND_SPEECH_STARTED: VoiceActivity.Kind
    KIND_SPEECH_ENDED: VoiceActivity.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    kind: VoiceActivity.Kind
    timestamp_ms: int
    def __init__(self, kind: _Optional[_Union[VoiceActivity.Kind, str]] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class CallerInterrupted(_message.Message):
    __slots__ = ("response_id", "heard_ms", "heard_text")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARD_MS_FIELD_NUMBER: _ClassVar[int]
    HEARD_TEXT_FIELD_NUMBER: _ClassVar[int]
    response_id: int
    heard_ms: int
    heard_text: str
    def __init__(self, response_id: _Optional[int] = ..., heard_ms: _Optional[int] = ..., heard_text: _Optional[str] = ...) -> None: ...

class Interruption(_message.Message):
    __slots__ = ("response_id",)
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: int
    def __init__(self, response_id: _Optional[int] = ...) -> None: ...

class ConverseManyRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ConverseManyRequestItem]
    def __init__(self, items: _Optional[_Iterable[_Union[ConverseManyRequestItem, _Mapping]]] = ...) -> None: ...

class ConverseManyRequestItem(_message.Message):
    __slots__ = ("call", "request", "signal")
    CALL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    call: int
    request: ConverseRequest
    signal: _common_pb2.StreamSignal
    def __init__(self, call: _Optional[int] = ..., request: _Optional[_Union[ConverseRequest, _Mapping]] = ..., signal: _Optional[_Union[_common_pb2.StreamSignal, str]] = ...) -> None: ...

class ConverseManyResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ConverseManyResponseItem]
    def __init__(self, items: _Optional[_Iterable[_Union[ConverseManyResponseItem, _Mapping]]] = ...) -> None: ...

class ConverseManyResponseItem(_message.Message):
    __slots__ = ("call", "response", "status")
    CALL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    call: int
    response: ConverseResponse
    status: _common_pb2.StreamStatus
    def __init__(self, call: _Optional[int] = ..., response: _Optional[_Union[ConverseResponse, _Mapping]] = ..., status: _Optional[_Union[_common_pb2.StreamStatus, _Mapping]] = ...) -> None: ...

class AudioChunkColumns(_message.Message):
    __slots__ = ("calls", "lengths", "data", "encodings", "sample_rates_hz", "response_ids", "timestamps_ms", "received_unix_nanos")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATES_HZ_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_IDS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedScalarFieldContainer[int]
    lengths: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    encodings: _containers.RepeatedScalarFieldContainer[_common_pb2.AudioEncoding]
    sample_rates_hz: _containers.RepeatedScalarFieldContainer[int]
    response_ids: _containers.RepeatedScalarFieldContainer[int]
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    received_unix_nanos: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, calls: _Optional[_Iterable[int]] = ..., lengths: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., encodings: _Optional[_Iterable[_Union[_common_pb2.AudioEncoding, str]]] = ..., sample_rates_hz: _Optional[_Iterable[int]] = ..., response_ids: _Optional[_Iterable[int]] = ..., timestamps_ms: _Optional[_Iterable[int]] = ..., received_unix_nanos: _Optional[_Iterable[int]] = ...) -> None: ...

class ConverseBatchRequest(_message.Message):
    __slots__ = ("items", "item_positions", "audio")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEM_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ConverseManyRequestItem]
    item_positions: _containers.RepeatedScalarFieldContainer[int]
    audio: AudioChunkColumns
    def __init__(self, items: _Optional[_Iterable[_Union[ConverseManyRequestItem, _Mapping]]] = ..., item_positions: _Optional[_Iterable[int]] = ..., audio: _Optional[_Union[AudioChunkColumns, _Mapping]] = ...) -> None: ...

class ConverseBatchResponse(_message.Message):
    __slots__ = ("items", "item_positions", "audio")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEM_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ConverseManyResponseItem]
    item_positions: _containers.RepeatedScalarFieldContainer[int]
    audio: AudioChunkColumns
    def __init__(self, items: _Optional[_Iterable[_Union[ConverseManyResponseItem, _Mapping]]] = ..., item_positions: _Optional[_Iterable[int]] = ..., audio: _Optional[_Union[AudioChunkColumns, _Mapping]] = ...) -> None: ...
