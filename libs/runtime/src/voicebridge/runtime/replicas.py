"""Calls spread over the replicas of the next service: one multiplexed stream per replica pair.

Why: a headless Kubernetes Service gives a client every ready pod's address and leaves the balancing
to it. A gRPC channel would balance *streams*, but every call between two processes travels on one
shared stream (runtime/mux/), so the choice has to be made per call, here:

- the name is resolved (runtime/resolvers.py) every `resolve_interval_s` and at once after a replica
  failed; a replica that leaves the name keeps its calls until they end, then its channel is closed;
- each replica's gRPC health is watched (`Health.Watch`): a replica that says NOT_SERVING (draining,
  runtime/drain.py) or cannot be reached gets no new call; one not heard from yet only when no replica
  is known to be serving;
- a new call goes to the replica with the fewest calls in progress *from this process* (ties: the one
  chosen longest ago, so short calls still go round). Each client counts its own calls: exact with one
  client, and with several (two edges) each spreads its own share evenly, which spreads the sum evenly
  as long as the clients themselves get even shares (the Ingress / Twilio's load balancer does that);
- a call stays on its replica for its whole life (its `MuxCall` belongs to that replica's client).
  Until the replica has answered anything, the call is *not started*: if the replica refuses it (it
  answers `end` with END_REASON_SHUTDOWN: it began draining after we chose it) or its stream fails
  UNAVAILABLE (it vanished), the call is opened again on another replica and everything written so far
  is written there again, so the caller notices nothing (runtime/replica_call.py). After the first
  answer (or `max_replay` messages) the call is started and a failure is the call's, as with one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Gauge

from .grpc_tls import GrpcTls
from .loop_metrics import Counter
from .replica_call import ReplicaCall
from .resolvers import Resolver, resolver_for

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.UNKNOWN
_STATE_NAMES = {SERVING: "serving", NOT_SERVING: "not_serving", UNKNOWN: "unknown"}

REPLICAS = Gauge(
    "voicebridge_replicas", "Replicas of the next service this process knows, by health", ["hop", "state"]
)
REPLICA_CALLS = Gauge(
    "voicebridge_replica_calls_active",
    "Calls this process has in progress on replicas of the next service",
    ["hop"],
)
CALLS_MOVED = Counter(
    "voicebridge_replica_calls_moved_total",
    "New calls opened again on another replica before they started, by why",
    ["hop", "why"],
)
NO_REPLICA = Counter(
    "voicebridge_replica_unavailable_total", "New calls that found no replica to take them", ["hop"]
)


class Opener(Protocol):
    """What callers need from the next service: `open()` a call (a grpc.aio-like bidi call)."""

    def open(self) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass(eq=False)
class Replica:
    address: str
    channel: grpc.aio.Channel
    client: Any  # MuxClient
    health: int = UNKNOWN
    active: int = 0
    last_chosen: int = 0
    listed: bool = True
    watch: asyncio.Task[None] | None = field(default=None, repr=False)


class SingleTarget:
    """Today's behaviour: one channel to one address, its calls on one client."""

    def __init__(self, channel: grpc.aio.Channel, client: Any) -> None:
        self._channel, self._client = channel, client

    def open(self) -> Any:
        return self._client.open()

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._channel.close()


class ReplicaPool:
    """The replicas behind one name, and the choice of one for each new call (see the module doc).

    `connect(address)` returns (channel, client) for one replica; `health_service` is the gRPC service
    name whose health is watched; `hop` names the next service in metrics and logs."""

    def __init__(
        self,
        resolver: Resolver,
        connect: Callable[[str], tuple[grpc.aio.Channel, Any]],
        health_service: str,
        hop: str,
        resolve_interval_s: float = 5.0,
        place_timeout_s: float = 5.0,
        max_replay: int = 500,
    ) -> None:
        self._resolver = resolver
        self._connect = connect
        self._health_service = health_service
        self.hop = hop
        self._interval = resolve_interval_s
        self._place_timeout = place_timeout_s
        self.max_replay = max_replay
        self._replicas: dict[str, Replica] = {}
        self._sequence = itertools.count(1)
        self._changed = asyncio.Event()
        self._resolved = asyncio.Event()
        self._resolve_now = asyncio.Event()
        self._trackers: set[asyncio.Task[None]] = set()
        self._active = REPLICA_CALLS.labels(hop)
        self._moved = {why: CALLS_MOVED.labels(hop, why) for why in ("refused", "unavailable")}
        self._no_replica = NO_REPLICA.labels(hop)
        self._resolver_task = asyncio.get_running_loop().create_task(self._resolve_loop(), name="resolver")

    # -- what callers use ---------------------------------------------------------------------

    def open(self) -> ReplicaCall:
        """A new call, placed on a replica as soon as one is known (writes wait for that)."""
        return ReplicaCall(self)

    def replicas(self) -> dict[str, tuple[str, int]]:
        """address -> (health, calls in progress from here): for logs and tests."""
        return {a: (_STATE_NAMES.get(r.health, "unknown"), r.active) for a, r in self._replicas.items()}

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Until `condition()` holds, checked whenever the set or a replica's health changes."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        self._resolver_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._resolver_task
        for task in list(self._trackers):
            task.cancel()
        for replica in list(self._replicas.values()):
            await self._close(replica)

    # -- placing calls ------------------------------------------------------------------------

    def _pick(self, exclude: set[str]) -> Replica | None:
        candidates = [r for r in self._replicas.values() if r.listed and r.address not in exclude]
        serving = [r for r in candidates if r.health == SERVING]
        pool = serving or [r for r in candidates if r.health == UNKNOWN]
        if not pool:
            return None
        return min(pool, key=lambda r: (r.active, r.last_chosen))

    async def place(self, exclude: set[str], timeout_s: float | None = None) -> Replica | None:
        """A replica for a new call (never one in `exclude`), waiting a little (`timeout_s`, by default
        the pool's) for one to appear."""
        loop = asyncio.get_running_loop()
        timeout = self._place_timeout if timeout_s is None else timeout_s
        deadline = loop.time() + timeout
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resolved.wait(), timeout)
        while (replica := self._pick(exclude)) is None and (left := deadline - loop.time()) > 0:
            self._resolve_now.set()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        if replica is None:
            if timeout > 0:  # a search that waits for none (replica_call: "not here") is not a failure
                self._no_replica.inc()
            return None
        replica.last_chosen = next(self._sequence)
        return replica

    def track(self, replica: Replica, call: Any) -> None:
        """Count `call` on `replica` until it has finished."""
        replica.active += 1
        self._active.inc()
        task = asyncio.get_running_loop().create_task(self._until_done(replica, call), name="replica-call")
        self._trackers.add(task)
        task.add_done_callback(self._trackers.discard)

    async def _until_done(self, replica: Replica, call: Any) -> None:
        try:
            with contextlib.suppress(grpc.RpcError):
                await call.code()
        finally:
            replica.active -= 1
            self._active.dec()
            self._changed.set()
            if not replica.listed and replica.active == 0 and self._replicas.get(replica.address) is replica:
                await self._close(replica)

    def failed(self, replica: Replica, why: str) -> None:
        """A replica refused a new call or vanished: no new calls until its health says otherwise."""
        self._moved[why].inc()
        log.warning("%s replica %s %s a new call; placing it on another", self.hop, replica.address, why)
        self._set_health(replica, NOT_SERVING)
        self._resolve_now.set()

    # -- the name and the replicas' health ----------------------------------------------------

    async def _resolve_loop(self) -> None:
        warned = False
        while True:
            try:
                addresses = await self._resolver.resolve()
                warned = False
            except (OSError, ValueError) as exc:
                if not warned:
                    log.warning(
                        "cannot resolve %s (keeping the last set): %s", self._resolver.description, exc
                    )
                    warned = True
            else:
                await self._update(addresses)
                self._resolved.set()
            self._resolve_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resolve_now.wait(), self._interval)

    async def _update(self, addresses: list[str]) -> None:
        wanted = set(addresses)
        for address in addresses:
            replica = self._replicas.get(address)
            if replica is None:
                try:
                    channel, client = self._connect(address)
                except ValueError as exc:  # ConfigError: e.g. plaintext to an address off loopback
                    log.error("%s replica %s refused: %s", self.hop, address, exc)
                    continue
                replica = self._replicas[address] = Replica(address, channel, client)
                replica.watch = asyncio.get_running_loop().create_task(
                    self._watch(replica), name="replica-health"
                )
                log.info("%s replica %s added (%s)", self.hop, address, self._resolver.description)
            elif not replica.listed:
                log.info("%s replica %s is listed again", self.hop, address)
            replica.listed = True
        for replica in list(self._replicas.values()):
            if replica.address not in wanted and replica.listed:
                replica.listed = False
                log.info(
                    "%s replica %s left the name (%d calls stay on it)",
                    self.hop,
                    replica.address,
                    replica.active,
                )
                if replica.active == 0:
                    await self._close(replica)
        self._publish()
        self._changed.set()

    async def _watch(self, replica: Replica) -> None:
        """Follow the replica's health for as long as it is known; an unreachable one is NOT_SERVING."""
        stub = health_pb2_grpc.HealthStub(replica.channel)
        backoff = 0.1
        while True:
            try:
                async for reply in stub.Watch(health_pb2.HealthCheckRequest(service=self._health_service)):
                    self._set_health(replica, reply.status)
                    backoff = 0.1
                self._set_health(replica, NOT_SERVING)  # the server ended the watch: it is stopping
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                    self._set_health(replica, SERVING)  # no health service: it cannot say; trust it
                    return
                self._set_health(replica, NOT_SERVING)  # unreachable, or failing: no new calls
            await asyncio.sleep(backoff)  # the channel's own reconnect backoff paces the retries too
            backoff = min(backoff * 2, 2.0)

    def _set_health(self, replica: Replica, status: int) -> None:
        if replica.health != status:
            log.info("%s replica %s is %s", self.hop, replica.address, _STATE_NAMES.get(status, str(status)))
            replica.health = status
            self._publish()
        self._changed.set()

    def _publish(self) -> None:
        counts = dict.fromkeys(_STATE_NAMES.values(), 0)
        for replica in self._replicas.values():
            if replica.listed:
                counts[_STATE_NAMES.get(replica.health, "unknown")] += 1
        for state, count in counts.items():
            REPLICAS.labels(self.hop, state).set(count)

    async def _close(self, replica: Replica) -> None:
        self._replicas.pop(replica.address, None)
        if replica.watch is not None:
            replica.watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica.watch
        await replica.client.aclose()
        await replica.channel.close()
        self._publish()
        self._changed.set()


def connect_target(
    target: str,
    tls: GrpcTls,
    options: list[tuple[str, Any]],
    client_for: Callable[[grpc.aio.Channel], Any],
    health_service: str,
    hop: str,
    resolve_interval_s: float = 5.0,
) -> Opener:
    """The calls to the next service at `target`: one channel for a single address, else a pool."""
    resolver = resolver_for(target)
    if resolver is None:
        channel = tls.aio_channel(target, options)
        return SingleTarget(channel, client_for(channel))
    extra = (
        [("grpc.ssl_target_name_override", resolver.tls_name)] if resolver.tls_name and tls.enabled else []
    )

    def connect(address: str) -> tuple[grpc.aio.Channel, Any]:
        channel = tls.aio_channel(address, [*options, *extra])
        return channel, client_for(channel)

    return ReplicaPool(resolver, connect, health_service, hop, resolve_interval_s)
