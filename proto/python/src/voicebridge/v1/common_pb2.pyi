from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_S16LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_MULAW: _ClassVar[AudioEncoding]

class CallDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_DIRECTION_UNSPECIFIED: _ClassVar[CallDirection]
    CALL_DIRECTION_INBOUND: _ClassVar[CallDirection]
    CALL_DIRECTION_OUTBOUND: _ClassVar[CallDirection]

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    END_REASON_CALLER_HANGUP: _ClassVar[EndReason]
    END_REASON_AGENT_ENDED: _ClassVar[EndReason]
    END_REASON_TRANSFERRED: _ClassVar[EndReason]
    END_REASON_AGENT_BUSY: _ClassVar[EndReason]
    END_REASON_AGENT_ERROR: _ClassVar[EndReason]
    END_REASON_AGENT_TIMEOUT: _ClassVar[EndReason]
    END_REASON_PROTOCOL_ERROR: _ClassVar[EndReason]
    END_REASON_UNSUPPORTED_FORMAT: _ClassVar[EndReason]
    END_REASON_UNAUTHENTICATED: _ClassVar[EndReason]
    END_REASON_SHUTDOWN: _ClassVar[EndReason]
    END_REASON_UNAVAILABLE: _ClassVar[EndReason]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ARGUMENT: _ClassVar[ErrorCode]
    ERROR_CODE_FAILED_PRECONDITION: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_PERMISSION_DENIED: _ClassVar[ErrorCode]

class StreamSignal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_SIGNAL_UNSPECIFIED: _ClassVar[StreamSignal]
    STREAM_SIGNAL_HALF_CLOSE: _ClassVar[StreamSignal]
    STREAM_SIGNAL_CANCEL: _ClassVar[StreamSignal]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM_S16LE: AudioEncoding
AUDIO_ENCODING_MULAW: AudioEncoding
CALL_DIRECTION_UNSPECIFIED: CallDirection
CALL_DIRECTION_INBOUND: CallDirection
CALL_DIRECTION_OUTBOUND: CallDirection
END_REASON_UNSPECIFIED: EndReason
END_REASON_CALLER_HANGUP: EndReason
END_REASON_AGENT_ENDED: EndReason
END_REASON_TRANSFERRED: EndReason
END_REASON_AGENT_BUSY: EndReason
END_REASON_AGENT_ERROR: EndReason
END_REASON_AGENT_TIMEOUT: EndReason
END_REASON_PROTOCOL_ERROR: EndReason
END_REASON_UNSUPPORTED_FORMAT: EndReason
END_REASON_UNAUTHENTICATED: EndReason
END_REASON_SHUTDOWN: EndReason
END_REASON_UNAVAILABLE: EndReason
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_FAILED_PRECONDITION: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_DEADLINE_EXCEEDED: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_NOT_FOUND: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
STREAM_SIGNAL_UNSPECIFIED: StreamSignal
STREAM_SIGNAL_HALF_CLOSE: StreamSignal
STREAM_SIGNAL_CANCEL: StreamSignal

class AudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hz: int
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ...) -> None: ...

class CallInfo(_message.Message):
    __slots__ = ("call_sid", "stream_sid", "account_sid", "from_number", "to_number", "direction", "custom_parameters")
    class CustomParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALL_SID_FIELD_NUMBER: _ClassVar[int]
    STREAM_SID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SID_FIELD_NUMBER: _ClassVar[int]
    FROM_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TO_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    call_sid: str
    stream_sid: str
    account_sid: str
    from_number: str
    to_number: str
    direction: CallDirection
    custom_parameters: _containers.ScalarMap[str, str]
    def __init__(self, call_sid: _Optional[str] = ..., stream_sid: _Optional[str] = ..., account_sid: _Optional[str] = ..., from_number: _Optional[str] = ..., to_number: _Optional[str] = ..., direction: _Optional[_Union[CallDirection, str]] = ..., custom_parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CallEnd(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: EndReason
    detail: str
    def __init__(self, reason: _Optional[_Union[EndReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "fatal")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    fatal: bool
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., fatal: _Optional[bool] = ...) -> None: ...

class DtmfDigit(_message.Message):
    __slots__ = ("digit",)
    DIGIT_FIELD_NUMBER: _ClassVar[int]
    digit: str
    def __init__(self, digit: _Optional[str] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("role", "text", "final", "correction", "response_id")
    class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ROLE_UNSPECIFIED: _ClassVar[Transcript.Role]
        ROLE_CALLER: _ClassVar[Transcript.Role]
        ROLE_AGENT: _ClassVar[Transcript.Role]
    ROLE_UNSPECIFIED: Transcript.Role
    ROLE_CALLER: Transcript.Role
    ROLE_AGENT: Transcript.Role
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    role: Transcript.Role
    text: str
    final: bool
    correction: bool
    response_id: int
    def __init__(self, role: _Optional[_Union[Transcript.Role, str]] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ..., correction: _Optional[bool] = ..., response_id: _Optional[int] = ...) -> None: ...

class HangUp(_message.Message):
    __slots__ = ("reason", "end_reason")
    REASON_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    end_reason: EndReason
    def __init__(self, reason: _Optional[str] = ..., end_reason: _Optional[_Union[EndReason, str]] = ...) -> None: ...

class TransferCall(_message.Message):
    __slots__ = ("destination", "reason")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    destination: str
    reason: str
    def __init__(self, destination: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TransferResult(_message.Message):
    __slots__ = ("destination", "transferred", "detail")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    destination: str
    transferred: bool
    detail: str
    def __init__(self, destination: _Optional[str] = ..., transferred: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class StreamStatus(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PlaybackPosition(_message.Message):
    __slots__ = ("response_id", "offset_us")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_US_FIELD_NUMBER: _ClassVar[int]
    response_id: int
    offset_us: int
    def __init__(self, response_id: _Optional[int] = ..., offset_us: _Optional[int] = ...) -> None: ...
