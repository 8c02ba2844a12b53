"""Many calls on one gRPC stream: the client and server halves of the *Batch and *Many RPCs.

Why: with Python's grpc.aio a stream message costs 0.3-1.1 ms of CPU over its two ends whatever it
carries (`voicebridge-grpc-bench`), and a call sends a caller frame every 20 ms over every hop.
Carrying every call between two processes on one stream, with everything that is ready at the same
moment in one message, divides that cost by the batch size.

The per-call code stays as it is. The client (`client.py`) hands out `MuxCall`s (`call.py`) that
behave like a grpc.aio bidi call (write, done_writing, read, cancel, done, code); the server
(`server.py`) runs the per-call servicer method once per call number and feeds it that call's
messages. The *Batch RPCs carry audio as columns (`columns.py`), read and written as plain frame
objects (`frames.py`) that the per-call code takes as it takes the messages they stand for, so the
hot path makes no protobuf object per frame; `codec.py` turns call messages into either RPC's
batches and back. A server without the *Batch method answers UNIMPLEMENTED, and the client tries
*Many, then per-call streams (`contracts.py` wires the two hops). Both halves batch through
`batching.py` and speak `framing.py`.

One call's trouble stays that call's: a call whose messages pile up unread is ended with
RESOURCE_EXHAUSTED, and a failing handler ends only its call. Losing the shared stream itself ends
every call on it, as losing the peer process would.
"""

from .call import MuxCall
from .client import MuxClient
from .codec import CALL_BATCH, CALL_MANY, CONVERSE_BATCH, CONVERSE_MANY, RpcCodec
from .contracts import agent_client, agent_servers, media_client, media_servers
from .frames import AgentChunkFrame, CallerAudioFrame, CallerChunkFrame, PlayAudioFrame, as_proto
from .framing import BATCH_ITEMS, CALLS_OVERRUN, CANCEL, HALF_CLOSE, Handler
from .server import MuxServer

__all__ = [
    "BATCH_ITEMS",
    "CALLS_OVERRUN",
    "CALL_BATCH",
    "CALL_MANY",
    "CANCEL",
    "CONVERSE_BATCH",
    "CONVERSE_MANY",
    "HALF_CLOSE",
    "AgentChunkFrame",
    "CallerAudioFrame",
    "CallerChunkFrame",
    "Handler",
    "MuxCall",
    "MuxClient",
    "MuxServer",
    "PlayAudioFrame",
    "RpcCodec",
    "agent_client",
    "agent_servers",
    "as_proto",
    "media_client",
    "media_servers",
]
