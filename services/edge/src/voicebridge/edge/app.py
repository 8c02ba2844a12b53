"""The edge's FastAPI application: the Media Streams WebSocket, Twilio webhooks, health (metrics: own port).

`create_app(settings)` wires the parts; each route's logic lives in its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import grpc
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from voicebridge.runtime.drain import Drain
from voicebridge.runtime.grpc_server import CLIENT_OPTIONS
from voicebridge.runtime.metrics import BUILD_INFO, watch_loop_lag
from voicebridge.runtime.mux import MuxClient, media_client
from voicebridge.runtime.replicas import connect_target
from voicebridge.runtime.version import package_version
from voicebridge.v1 import media_pb2, media_pb2_grpc

from .config import MEDIA_STREAM_PATH, EdgeSettings
from .media_stream import MediaStreamSession, StreamGate
from .metrics import STREAMS_REJECTED
from .twilio import media_streams as ms
from .twilio_actions import CallControl, TwilioActions

log = logging.getLogger(__name__)
VERSION = package_version("voicebridge-edge")
MEDIA_SERVICE = media_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str  # "ready" or "draining"
    calls: int  # Media Streams in progress on this edge


def create_app(
    settings: EdgeSettings,
    rest: CallControl | None = None,
    verify_upgrade: Callable[[WebSocket], bool] | None = None,
    verify_start: Callable[[ms.Start], str | None] | None = None,
    routers: Sequence[APIRouter] = (),
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """`verify_upgrade`/`verify_start` default to accepting everything only when signature
    validation is explicitly off (local development). `verify_start` returns why a `start` is refused.
    `routers` add the webhooks and the calls API (wiring.py); `on_shutdown` closes what they hold."""
    if settings.validate_signatures and (verify_upgrade is None or verify_start is None):
        raise ValueError("signature validation is on: pass verify_upgrade and verify_start")
    upgrade_ok = verify_upgrade or (lambda _ws: True)
    start_ok = verify_start or (lambda _start: None)
    state: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        def media_calls_on(channel: grpc.aio.Channel) -> MuxClient:
            # Every call to one media process on one multiplexed stream (runtime/mux/), unless
            # GRPC_MULTIPLEX=false.
            return media_client(
                media_pb2_grpc.MediaServiceStub(channel),
                interval_s=settings.mux.interval_s,
                enabled=settings.mux.enabled,
            )

        # One media address, or the replicas a name resolves to (runtime/replicas.py).
        media_calls = state["media"] = connect_target(
            settings.media_target,
            settings.tls,
            CLIENT_OPTIONS,
            media_calls_on,
            MEDIA_SERVICE,
            "media",
            settings.resolve_interval_s,
        )
        lag = asyncio.create_task(watch_loop_lag(), name="loop-lag")
        BUILD_INFO.labels("edge", VERSION).set(1)
        if not settings.validate_signatures:
            log.warning(
                "local development mode: Twilio signature checks are off and the edge is reachable on "
                "loopback only; set TWILIO_AUTH_TOKEN and an https PUBLIC_BASE_URL for production"
            )
        elif not settings.public_base_url.startswith("https://"):
            log.warning("PUBLIC_BASE_URL is not https: Twilio dials only wss:// streams (local use only)")
        hop = "mTLS" if settings.tls.enabled else "plaintext"
        log.info("edge: media at %s (%s)", settings.media_target, hop)
        try:
            yield
        finally:
            for close in on_shutdown:
                close()
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag
            await media_calls.aclose()

    # The API's description is docs/openapi.json (voicebridge.edge.openapi), not served: this port
    # faces the internet, and Twilio and API clients need nothing from it.
    app = FastAPI(
        title="voicebridge edge",
        version=VERSION,
        description="Twilio's webhooks and the calls API of the voicebridge edge (docs/edge.md). The Media "
        "Streams WebSocket (`/twilio/media`) is not an HTTP operation: docs/twilio.md#media-streams.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    gate = StreamGate(settings.max_pending_streams)
    actions = TwilioActions(rest, settings.transfer_destinations)
    drain = app.state.drain = Drain("edge")  # SIGTERM: edge/draining.py
    app.state.settings = settings

    @app.get("/healthz", summary="Liveness (the orchestrator's probe)")
    async def healthz() -> Health:
        """True until the process exits, draining or not."""
        return Health()

    @app.get(
        "/readyz",
        summary="Readiness (the orchestrator's probe): 503 while draining",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "draining: send new calls elsewhere"}},
    )
    async def readyz() -> Readiness | JSONResponse:
        """False from SIGTERM on (edge/draining.py), so the Ingress routes new calls to other edges."""
        if drain.draining:
            return JSONResponse(Readiness(status="draining", calls=len(drain)).model_dump(), status_code=503)
        return Readiness(status="ready", calls=len(drain))

    @app.websocket(MEDIA_STREAM_PATH)
    async def media_stream(ws: WebSocket) -> None:
        if not upgrade_ok(ws):
            STREAMS_REJECTED.labels("bad_signature").inc()
            log.warning("media stream upgrade refused: missing or invalid X-Twilio-Signature")
            await ws.close(code=1008)  # before accept: the client gets HTTP 403, no stream exists
            return
        await ws.accept()
        session = MediaStreamSession(ws, settings, state["media"], actions, start_ok)
        drain.add(session)  # a stream that arrives while draining is still a caller: it is served
        try:
            await session.run(gate)
        finally:
            drain.discard(session)

    for extra in routers:
        app.include_router(extra)
    return app
