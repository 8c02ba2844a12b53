"""What one internal gRPC message costs: `voicebridge-grpc-bench [--json]`.

Why: the capacity of the three-service design is set by how many gRPC messages cross its hops per
second (docs/performance.md), and the cost of one message on grpc.aio depends strongly on how many
are sent per second. This measures it on the machine at hand, with the project's own contract: one
MediaService.CallMany stream on loopback, carrying CallManyRequests of `items` caller frames each, at a
paced rate, into a server in another process that reads and discards them. It reports the CPU each
end spends per message (user + system time over the window) and how long `await write()` takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from typing import Any

import grpc
import psutil
import uvloop

from voicebridge.v1 import media_pb2, media_pb2_grpc

RATES = (100, 200, 500, 1000, 2000)
ITEMS = (1, 10)


class _Sink(media_pb2_grpc.MediaServiceServicer):
    async def CallMany(self, request_iterator, context):  # noqa: N802 - the generated name
        await context.send_initial_metadata(())
        async for _ in request_iterator:
            pass
        yield media_pb2.CallManyResponse()


def _serve(port_out: Any) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        media_pb2_grpc.add_MediaServiceServicer_to_server(_Sink(), server)
        port_out.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    uvloop.run(run())


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _batch(items: int) -> media_pb2.CallManyRequest:
    payload = bytes(160)  # 20 ms of μ-law
    return media_pb2.CallManyRequest(
        items=[
            media_pb2.CallManyRequestItem(
                call=i + 1,
                request=media_pb2.CallRequest(
                    audio=media_pb2.CallerAudio(payload=payload, timestamp_ms=20 * i, received_unix_nanos=1)
                ),
            )
            for i in range(items)
        ]
    )


async def _measure(port: int, server: psutil.Process, rate: int, items: int, seconds: float) -> dict:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = media_pb2_grpc.MediaServiceStub(channel).CallMany()
        await call.initial_metadata()
        message = _batch(items)
        for _ in range(20):  # warm up
            await call.write(message)
        loop = asyncio.get_running_loop()
        waits: list[float] = []
        server_before = sum(server.cpu_times()[:2])
        cpu_before, began = _cpu_self(), loop.time()
        due = began
        while loop.time() - began < seconds:
            due += 1.0 / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            start = time.perf_counter()
            await call.write(message)
            waits.append(time.perf_counter() - start)
        elapsed = loop.time() - began
        client_cpu = _cpu_self() - cpu_before
        server_cpu = sum(server.cpu_times()[:2]) - server_before
        await call.done_writing()
        await call.read()
    n = len(waits)
    return {
        "rate_per_s": rate,
        "items_per_message": items,
        "messages": n,
        "achieved_rate_per_s": round(n / elapsed, 1),
        "client_cpu_us_per_message": round(client_cpu / n * 1e6, 1),
        "server_cpu_us_per_message": round(server_cpu / n * 1e6, 1),
        "write_await_p50_us": round(statistics.median(waits) * 1e6, 1),
        "cores_both_ends": round((client_cpu + server_cpu) / elapsed, 3),
    }


async def _run(args: argparse.Namespace, port: int, server_pid: int) -> list[dict]:
    server = psutil.Process(server_pid)
    return [
        await _measure(port, server, rate, items, args.seconds) for items in args.items for rate in args.rates
    ]


def _text(rows: list[dict]) -> str:
    head = ("items", "rate/s", "achieved", "client µs/msg", "server µs/msg", "write await p50 µs", "cores")
    lines = [
        f"grpc.aio cost per message — Python {sys.version.split()[0]}, grpcio {grpc.__version__}, "
        f"{os.cpu_count()} CPUs",
        "",
        "  ".join(f"{h:>18}" for h in head),
    ]
    for r in rows:
        values = (
            r["items_per_message"],
            r["rate_per_s"],
            r["achieved_rate_per_s"],
            r["client_cpu_us_per_message"],
            r["server_cpu_us_per_message"],
            r["write_await_p50_us"],
            r["cores_both_ends"],
        )
        lines.append("  ".join(f"{v:>18}" for v in values))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES), help="messages per second")
    parser.add_argument("--items", type=int, nargs="+", default=list(ITEMS), help="caller frames per message")
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement window per row")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    port_out = ctx.Queue()
    child = ctx.Process(target=_serve, args=(port_out,), daemon=True)
    child.start()
    try:
        port = port_out.get(timeout=30)
        assert child.pid is not None  # started above
        rows = uvloop.run(_run(args, port, child.pid))
    finally:
        child.terminate()
        child.join(5)
    print(json.dumps(rows, indent=2) if args.json else _text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
