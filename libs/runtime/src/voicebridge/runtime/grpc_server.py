"""The life of a gRPC service process: start, serve health and reflection, drain on SIGTERM.

`run` is what each gRPC service's `main()` calls; the service only supplies a function that
registers its servicers, and a coroutine that drains its calls when the process is told to stop
(runtime/drain.py): health turns NOT_SERVING at once, calls run on up to the drain deadline, those
left end with a goodbye, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .drain import GOODBYE_TIMEOUT_S
from .grpc_metrics import MetricsInterceptor
from .grpc_tls import GrpcTls
from .metrics import BUILD_INFO, start_metrics_server, watch_loop_lag

log = logging.getLogger(__name__)

# Keepalive for hour-long bidi streams carrying no data while both sides are silent (docs/grpc.md#keepalive).
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]
CLIENT_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


@dataclass(frozen=True)
class GrpcServiceSpec:
    name: str  # short service name for logs and build info: "media", "agent"
    version: str
    listen: str  # host:port
    metrics_port: int
    grpc_services: tuple[str, ...]  # full names registered, for health and reflection
    register: Callable[[grpc.aio.Server], None]
    # Drain the calls in progress: given the deadline (DRAIN_DEADLINE_S) after which it ends them.
    drain: Callable[[float], Awaitable[None]]
    drain_deadline_s: float = 30.0
    # mTLS identity (GRPC_TLS_*); plaintext only on loopback or with GRPC_INSECURE.
    tls: GrpcTls = field(default_factory=GrpcTls)
    metrics_host: str = "127.0.0.1"  # METRICS_HOST: a container sets 0.0.0.0 for Prometheus


async def serve(spec: GrpcServiceSpec, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then drain (NOT_SERVING first) and stop."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    server = grpc.aio.server(interceptors=[MetricsInterceptor()], options=SERVER_OPTIONS)
    spec.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*spec.grpc_services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = spec.tls.add_port(server, spec.listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {spec.listen}")
    metrics_server = start_metrics_server(spec.metrics_port, spec.metrics_host)
    BUILD_INFO.labels(spec.name, spec.version).set(1)
    await server.start()
    for name in ("", *spec.grpc_services):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    lag_task = asyncio.create_task(watch_loop_lag(), name="loop-lag")
    log.info(
        "%s serving gRPC on %s (%s; metrics on %s:%s)",
        spec.name,
        spec.listen,
        "mTLS" if spec.tls.enabled else "plaintext",
        spec.metrics_host,
        spec.metrics_port,
    )
    try:
        await stop.wait()
    finally:
        log.info("%s shutting down", spec.name)
        await health_servicer.enter_graceful_shutdown()  # NOT_SERVING: peers place no new call here
        bound = spec.drain_deadline_s + GOODBYE_TIMEOUT_S + 5.0
        try:
            await asyncio.wait_for(spec.drain(spec.drain_deadline_s), timeout=bound)
        except TimeoutError:
            log.warning("calls did not end within %.0fs of the drain; cancelling them", bound)
        await server.stop(grace=1.0)
        lag_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag_task
        if metrics_server is not None:
            metrics_server.shutdown()
        log.info("%s stopped", spec.name)


def run(spec: GrpcServiceSpec) -> None:
    """Blocking entry point for a service's console script (uvloop when available)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency of every gRPC service
        runner = asyncio.run
    runner(serve(spec))
