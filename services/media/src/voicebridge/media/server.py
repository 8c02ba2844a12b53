"""Builds the media service process: the Call servicer behind the shared gRPC lifecycle."""

from __future__ import annotations

import grpc

from voicebridge.runtime.grpc_server import GrpcServiceSpec
from voicebridge.runtime.version import package_version
from voicebridge.v1 import media_pb2, media_pb2_grpc

from .config import MediaSettings
from .servicer import MediaServicer

VERSION = package_version("voicebridge-media")
SERVICE_NAME = media_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name


def build(settings: MediaSettings) -> GrpcServiceSpec:
    holder: dict[str, MediaServicer] = {}

    def register(server: grpc.aio.Server) -> None:
        holder["servicer"] = servicer = MediaServicer(settings)
        media_pb2_grpc.add_MediaServiceServicer_to_server(servicer, server)

    async def drain(deadline_s: float) -> None:
        if "servicer" in holder:
            await holder["servicer"].drain(deadline_s)

    return GrpcServiceSpec(
        name="media",
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
