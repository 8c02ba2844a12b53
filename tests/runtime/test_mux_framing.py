"""How a call's end travels inside a batch (runtime/mux/framing.py): every gRPC status code survives
the trip, a code this side does not know reads as UNKNOWN, and the error a reader sees carries it."""

from __future__ import annotations

import grpc
import pytest

from voicebridge.runtime.mux.framing import rpc_error, status_code, status_message
from voicebridge.v1 import common_pb2


@pytest.mark.parametrize("code", list(grpc.StatusCode))
def test_every_status_code_survives_the_trip(code: grpc.StatusCode) -> None:
    status = status_message(code, "why")
    wire = common_pb2.StreamStatus.FromString(status.SerializeToString())
    assert status_code(wire) is code
    assert wire.message == "why"


def test_an_unknown_code_reads_as_unknown() -> None:
    assert status_code(common_pb2.StreamStatus(code=999)) is grpc.StatusCode.UNKNOWN


def test_the_reader_sees_the_code_and_details() -> None:
    error = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "responses piled up unread")
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "responses piled up unread"
