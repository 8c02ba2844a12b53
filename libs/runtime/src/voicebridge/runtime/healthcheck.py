"""`python -m voicebridge.runtime.healthcheck HOST:PORT [SERVICE]`: exit 0 when the gRPC server is SERVING.

Used by container healthchecks and by the test harness to know a service is up, without a Go probe.
Under mTLS it presents the service's own certificate (GRPC_TLS_* from the environment or `.env`).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .config import ConfigError, load_env_file
from .grpc_tls import GrpcTls


def check(target: str, service: str = "", timeout_s: float = 1.0, tls: GrpcTls | None = None) -> bool:
    with (tls or GrpcTls()).channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m voicebridge.runtime.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    load_env_file()
    try:
        tls = GrpcTls.from_env()
    except ConfigError as exc:
        print(f"healthcheck: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0 if check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "", tls=tls) else 1


if __name__ == "__main__":
    sys.exit(main())
