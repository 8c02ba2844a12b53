"""The three services' cores wired together in one process, on a virtual clock.

    FakeTwilioSocket -> MediaStreamSession (edge) =mux=> MediaServicer/CallSession (media)
        =mux=> ConverseServicer (agent) -> ScriptedBackend

Each `=mux=>` is the production multiplexed stream (runtime/mux/) over an in-memory gRPC stream
(harness/inmemory_grpc.py), so a test drives every end path through the same code the processes
run, with the ordering of the racing messages chosen by the test and time moved by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voicebridge.agent.converse import ConverseServicer
from voicebridge.edge.config import EdgeSettings
from voicebridge.edge.media_stream import MediaStreamSession, StreamGate
from voicebridge.edge.twilio_actions import TwilioActions
from voicebridge.media.config import MediaSettings
from voicebridge.media.servicer import MediaServicer
from voicebridge.runtime.config import Env
from voicebridge.runtime.mux import CALL_BATCH, CALL_MANY

from .core_fakes import FakeCallControl, FakeTwilioSocket, ScriptedBackend
from .inmemory_grpc import InMemoryChannel, converse_client, mux_client
from .virtual_clock import VirtualClock

CALL_METHOD = "/voicebridge.v1.MediaService/Call"
# What stays between calls: per shared stream, the client's writer and reader and the server side
# (the in-memory RPC task serving it, and the server's reader).
SHARED_STREAM_TASKS = ["inmemory-rpc", "mux-reader", "mux-reader", "mux-writer"]


def media_settings(**env: str) -> MediaSettings:
    return MediaSettings.from_env(Env({"BARGE_IN": "false", "PLAYOUT_TICK_MS": "0", **env}))


def edge_settings(**env: str) -> EdgeSettings:
    return EdgeSettings.from_env(Env({"TWILIO_VALIDATE_SIGNATURES": "false", **env}))


@dataclass
class Chain:
    clock: VirtualClock
    backend: ScriptedBackend
    converse: ConverseServicer
    media: MediaServicer
    control: FakeCallControl
    actions: TwilioActions
    edge_settings: EdgeSettings
    channels: list[InMemoryChannel]
    media_calls: Any
    agent_calls: Any
    sessions: list[asyncio.Task] = field(default_factory=list)

    @property
    def edge_to_media(self) -> InMemoryChannel:
        return self.channels[0]

    @property
    def media_to_agent(self) -> InMemoryChannel:
        return self.channels[1]

    def call(self, socket: FakeTwilioSocket | None = None) -> tuple[FakeTwilioSocket, asyncio.Task]:
        """A new Twilio stream to the edge, served as app.py serves it; connect it with socket.connect."""
        socket = socket or FakeTwilioSocket(
            stream_sid=f"MZ{len(self.sessions):04d}", call_sid=f"CA{len(self.sessions):04d}"
        )
        session = MediaStreamSession(
            socket,  # type: ignore[arg-type]  # the Starlette WebSocket subset it uses
            self.edge_settings,
            self.media_calls,
            self.actions,
            lambda start: None,
        )
        task = asyncio.create_task(session.run(StreamGate(8)), name="edge-session")
        self.sessions.append(task)
        return socket, task

    async def run_until(self, awaitable: Awaitable[Any], what: str, virtual_s: float = 60.0) -> Any:
        """Move virtual time until `awaitable` is done; fail after `virtual_s` of it."""
        future = asyncio.ensure_future(awaitable)
        end = self.clock.now() + virtual_s
        while not future.done():
            if self.clock.now() >= end:
                future.cancel()
                raise AssertionError(f"not done after {virtual_s} virtual seconds: {what}")
            await self.clock.advance(0.01)
        return future.result()

    async def until(self, condition: Callable[[], bool], what: str, virtual_s: float = 60.0) -> None:
        """Move virtual time until `condition()` holds; fail after `virtual_s` of it."""
        end = self.clock.now() + virtual_s
        await self.clock.settle()
        while not condition():
            if self.clock.now() >= end:
                raise AssertionError(f"not true after {virtual_s} virtual seconds: {what}")
            await self.clock.advance(0.01)

    def leftovers(self) -> list[str]:
        """What is still alive in any service after the calls ended, beyond the shared streams."""
        left = []
        if self.media.calls_in_progress:
            left.append(f"media: {self.media.calls_in_progress} calls")
        if self.converse.sessions_in_progress:
            left.append(f"agent: {self.converse.sessions_in_progress} sessions")
        left += [f"backend session {s.ready.conversation_id} open" for s in self.backend.open_sessions()]
        left += [f"edge session task {i} running" for i, t in enumerate(self.sessions) if not t.done()]
        return left

    def live_tasks(self, before: set[asyncio.Task]) -> list[str]:
        current = asyncio.current_task()
        return sorted(t.get_name() for t in asyncio.all_tasks() - before if t is not current)

    async def aclose(self) -> None:
        for task in self.sessions:
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)
        await self.media_calls.aclose()
        await self.agent_calls.aclose()
        for channel in self.channels:
            await channel.aclose()


def build_chain(
    clock: VirtualClock | None = None,
    media_env: dict[str, str] | None = None,
    multiplex: bool = True,
) -> Chain:
    clock = clock or VirtualClock()
    backend = ScriptedBackend()
    converse = ConverseServicer(backend)
    to_agent, to_media = InMemoryChannel(), InMemoryChannel()
    agent_calls = converse_client(
        to_agent, converse.ConverseMany, converse.Converse, enabled=multiplex, batch=converse.ConverseBatch
    )
    media = MediaServicer(media_settings(**(media_env or {})), agent_calls, clock)
    media_calls = mux_client(
        to_media,
        [(media.CallBatch, CALL_BATCH), (media.CallMany, CALL_MANY)],
        media.Call,
        CALL_METHOD,
        enabled=multiplex,
    )
    control = FakeCallControl()
    actions = TwilioActions(control, frozenset({"*"}))
    return Chain(
        clock,
        backend,
        converse,
        media,
        control,
        actions,
        edge_settings(),
        [to_media, to_agent],
        media_calls,
        agent_calls,
    )
