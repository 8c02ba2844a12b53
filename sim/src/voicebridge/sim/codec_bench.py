"""What the internal contract costs per audio frame, *Many against *Batch: `voicebridge-codec-bench [--json]`.

Why: the batch RPCs (CallBatch, ConverseBatch) exist to take the protobuf work per frame off the hot
path; gRPC's own cost per message is the same for both (`voicebridge-grpc-bench`). This measures, in
one process and with no I/O, what each layout costs per frame from the producer's object to the
consumer's read of it: build the frame (the protobuf message on *Many, the plain frame object on
*Batch where the services write one), encode a batch of every call's frame, serialize, parse,
decode, read the fields the services read. Best of `--repeats` timings of `--rounds` batches (the
best is what the code costs; the rest is the machine's other work).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from voicebridge.runtime.mux import (
    CALL_BATCH,
    CALL_MANY,
    CONVERSE_BATCH,
    CONVERSE_MANY,
    CallerAudioFrame,
    CallerChunkFrame,
    RpcCodec,
)
from voicebridge.v1 import agent_pb2, common_pb2, media_pb2

PCM = common_pb2.AUDIO_ENCODING_PCM_S16LE
ULAW = common_pb2.AUDIO_ENCODING_MULAW


def _caller_audio_proto(i: int) -> Any:
    return media_pb2.CallRequest(
        audio={"payload": bytes(160), "timestamp_ms": 20 * i, "received_unix_nanos": i}
    )


def _caller_audio_frame(i: int) -> Any:
    return CallerAudioFrame(bytes(160), 20 * i, i)


def _play_audio_proto(i: int) -> Any:
    return media_pb2.CallResponse(audio=media_pb2.PlayAudio(payload=bytes(480), mark="", source_unix_nanos=i))


def _caller_chunk_proto(i: int) -> Any:
    return agent_pb2.ConverseRequest(
        audio=agent_pb2.AudioChunk(
            data=bytes(640),
            format=common_pb2.AudioFormat(encoding=PCM, sample_rate_hz=16000),
            timestamp_ms=20 * i,
            received_unix_nanos=i,
        )
    )


def _caller_chunk_frame(i: int) -> Any:
    return CallerChunkFrame(bytes(640), PCM, 16000, 0, 20 * i, i)


def _agent_chunk_proto(i: int) -> Any:
    return agent_pb2.ConverseResponse(
        audio=agent_pb2.AudioChunk(
            data=bytes(1600), format=common_pb2.AudioFormat(encoding=ULAW, sample_rate_hz=8000), response_id=i
        )
    )


def _read_caller_audio(message: Any) -> Any:
    audio = message.audio
    return audio.payload, audio.timestamp_ms, audio.received_unix_nanos


def _read_play_audio(message: Any) -> Any:
    audio = message.audio
    return audio.payload, audio.mark, audio.source_unix_nanos


def _read_chunk(message: Any) -> Any:
    audio = message.audio
    return audio.data, audio.response_id, audio.received_unix_nanos


# (hop, direction, codec of the *Many and *Batch RPC, producer on *Many, producer on *Batch, reader)
HOPS: list[tuple[str, str, RpcCodec, RpcCodec, Callable, Callable, Callable]] = [
    (
        "edge->media",
        "requests",
        CALL_MANY,
        CALL_BATCH,
        _caller_audio_proto,
        _caller_audio_frame,
        _read_caller_audio,
    ),
    (
        "media->edge",
        "responses",
        CALL_MANY,
        CALL_BATCH,
        _play_audio_proto,
        _play_audio_proto,
        _read_play_audio,
    ),
    (
        "media->agent",
        "requests",
        CONVERSE_MANY,
        CONVERSE_BATCH,
        _caller_chunk_proto,
        _caller_chunk_frame,
        _read_chunk,
    ),
    (
        "agent->media",
        "responses",
        CONVERSE_MANY,
        CONVERSE_BATCH,
        _agent_chunk_proto,
        _agent_chunk_proto,
        _read_chunk,
    ),
]


def _us_per_frame(codec: Any, make: Callable, read: Callable, calls: int, rounds: int, repeats: int) -> float:
    parse = type(codec.encode([(1, make(0))])).FromString
    best = float("inf")
    for _ in range(repeats):
        began = time.process_time()
        for _ in range(rounds):
            batch = codec.encode([(n, make(n)) for n in range(1, calls + 1)])
            for _, _, message in codec.decode(parse(batch.SerializeToString())):
                read(message)
        best = min(best, time.process_time() - began)
    return best / (rounds * calls) * 1e6


def measure(calls_list: list[int], rounds: int, repeats: int) -> list[dict]:
    rows = []
    for hop, direction, many, batch, make_many, make_batch, read in HOPS:
        for calls in calls_list:
            n = max(1, rounds // calls)
            many_us = _us_per_frame(getattr(many, direction), make_many, read, calls, n, repeats)
            batch_us = _us_per_frame(getattr(batch, direction), make_batch, read, calls, n, repeats)
            rows.append(
                {
                    "hop": hop,
                    "calls_per_message": calls,
                    "many_us_per_frame": round(many_us, 2),
                    "batch_us_per_frame": round(batch_us, 2),
                }
            )
    return rows


def _text(rows: list[dict]) -> str:
    lines = [f"{'hop':>14} {'calls/msg':>10} {'*Many µs/frame':>15} {'*Batch µs/frame':>16}"]
    for r in rows:
        many, batch = r["many_us_per_frame"], r["batch_us_per_frame"]
        lines.append(f"{r['hop']:>14} {r['calls_per_message']:>10} {many:>15} {batch:>16}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 20, 100], help="frames per message")
    parser.add_argument("--rounds", type=int, default=20000, help="frames per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings; the best is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = measure(args.calls, args.rounds, args.repeats)
    print(json.dumps(rows, indent=2) if args.json else _text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
