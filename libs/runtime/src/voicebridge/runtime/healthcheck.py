"""`python -m voicebridge.runtime.healthcheck HOST:PORT [SERVICE]`: exit 0 when the gRPC server is SERVING.

Used by container healthchecks and by the test harness to know a service is up, without a Go probe.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout_s: float = 1.0) -> bool:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m voicebridge.runtime.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    return 0 if check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "") else 1


if __name__ == "__main__":
    sys.exit(main())
