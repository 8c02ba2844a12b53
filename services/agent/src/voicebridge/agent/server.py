"""Builds the agent service: the configured backend behind the Converse servicer."""

from __future__ import annotations

import grpc

from voicebridge.runtime.grpc_server import GrpcServiceSpec
from voicebridge.runtime.version import package_version
from voicebridge.v1 import agent_pb2, agent_pb2_grpc

from .backends.base import AgentBackend
from .config import AgentSettings
from .converse import ConverseServicer

VERSION = package_version("voicebridge-agent")
SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name


def make_backend(settings: AgentSettings) -> AgentBackend:
    if settings.backend == "elevenlabs":
        from .backends.elevenlabs import ElevenLabsBackend

        assert settings.elevenlabs is not None
        return ElevenLabsBackend(settings.elevenlabs)
    from .backends.parrot import ParrotBackend

    return ParrotBackend(settings.parrot_format)


def build(settings: AgentSettings, backend: AgentBackend | None = None) -> GrpcServiceSpec:
    backend = backend or make_backend(settings)
    servicer = ConverseServicer(backend, settings.open_timeout_s, settings.hold)

    async def drain(deadline_s: float) -> None:
        await servicer.drain(deadline_s)
        await backend.aclose()

    def register(server: grpc.aio.Server) -> None:
        agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)

    return GrpcServiceSpec(
        name="agent",
        version=VERSION,
        listen=settings.listen,
        metrics_port=settings.metrics_port,
        grpc_services=(SERVICE_NAME,),
        register=register,
        drain=drain,
        drain_deadline_s=settings.drain_deadline_s,
        tls=settings.tls,
        metrics_host=settings.metrics_host,
    )
