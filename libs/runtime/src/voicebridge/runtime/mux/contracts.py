"""The two multiplexed hops of voicebridge, wired: which RPCs a client tries, in which order, and the
server halves the services register.

Clients try the batch RPC first (audio as columns), then the *Many RPC, then per-call streams: a
peer of an older release, or a third-party agent that implements only Converse, still works."""

from __future__ import annotations

from typing import Any

from .client import MuxClient
from .codec import CALL_BATCH, CALL_MANY, CONVERSE_BATCH, CONVERSE_MANY
from .framing import Handler
from .server import MuxServer

CALL = "/voicebridge.v1.MediaService/Call"
CONVERSE = "/voicebridge.v1.AgentService/Converse"


def media_client(stub: Any, **options: Any) -> MuxClient:
    """The edge's calls to media (a MediaServiceStub): CallBatch, else CallMany, else Call."""
    return MuxClient([(stub.CallBatch, CALL_BATCH), (stub.CallMany, CALL_MANY)], stub.Call, CALL, **options)


def agent_client(stub: Any, **options: Any) -> MuxClient:
    """Media's calls to the agent (an AgentServiceStub): ConverseBatch, else ConverseMany, else Converse."""
    return MuxClient(
        [(stub.ConverseBatch, CONVERSE_BATCH), (stub.ConverseMany, CONVERSE_MANY)],
        stub.Converse,
        CONVERSE,
        **options,
    )


def media_servers(call: Handler, **options: Any) -> tuple[MuxServer, MuxServer]:
    """CallBatch's and CallMany's server halves, each running `call` (MediaService.Call) per call."""
    return MuxServer(call, CALL_BATCH, CALL, **options), MuxServer(call, CALL_MANY, CALL, **options)


def agent_servers(converse: Handler, **options: Any) -> tuple[MuxServer, MuxServer]:
    """ConverseBatch's and ConverseMany's server halves, each running `converse` per call."""
    return (
        MuxServer(converse, CONVERSE_BATCH, CONVERSE, **options),
        MuxServer(converse, CONVERSE_MANY, CONVERSE, **options),
    )
