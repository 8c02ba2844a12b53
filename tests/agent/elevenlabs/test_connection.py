"""The ConvAI connection's direct send path (elevenlabs/connection.py) against a real `websockets`
server on loopback: frames arrive exactly as the library's own send() would deliver them, in order
with the library's path; a closed connection raises ConnectionClosed; back-pressure still holds
the sender (the library's path takes over while the transport is paused)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from voicebridge.agent.backends.elevenlabs import protocol as p
from voicebridge.agent.backends.elevenlabs.connection import FastSendConnection


class Peer:
    """A websockets server that records every message; `hold()` stops it reading its socket at all."""

    def __init__(self) -> None:
        self.received: list[str | bytes] = []
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.server_side: ServerConnection | None = None
        self._want = 0
        self._got = asyncio.Event()

    async def received_count(self, n: int) -> None:
        """Until `n` messages have arrived (10 s: a failure detector, not what is asserted)."""
        self._want = n
        if len(self.received) < n:
            self._got.clear()
            await asyncio.wait_for(self._got.wait(), 10)

    async def handler(self, ws: ServerConnection) -> None:
        self.server_side = ws
        self.connected.set()
        try:
            while True:
                self.received.append(await ws.recv())
                if len(self.received) >= self._want:
                    self._got.set()
        except ConnectionClosed:
            self.closed.set()

    def hold(self) -> None:
        assert self.server_side is not None
        self.server_side.transport.pause_reading()

    def release(self) -> None:
        assert self.server_side is not None
        self.server_side.transport.resume_reading()


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, str]]:
    peer = Peer()
    async with serve(peer.handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield peer, f"ws://127.0.0.1:{port}"


async def test_text_frames_arrive_exact_and_in_order_with_the_librarys_own_sends(peer) -> None:
    server, url = peer
    async with connect(url, compression=None, create_connection=FastSendConnection) as ws:
        assert isinstance(ws, FastSendConnection)
        contexts = 0
        library_context = ws.send_context

        def counted_context(*args, **kwargs):
            nonlocal contexts
            contexts += 1
            return library_context(*args, **kwargs)

        ws.send_context = counted_context  # how many sends took the library's path
        chunks = [bytes([i]) * 160 for i in range(50)]
        expected: list[str | bytes] = []
        for i, chunk in enumerate(chunks):
            text = p.encode_user_audio(chunk)
            await ws.send(text)  # the direct path
            expected.append(text)
            if i % 10 == 0:
                await ws.send(b"\x00binary")  # the library's path, in between
                expected.append(b"\x00binary")
                await ws.send(["frag", "mented"])  # a fragmented message: the library's path too
                expected.append("fragmented")
        await server.received_count(len(expected))
        assert contexts == 5 * (1 + 3)  # the binary and fragmented sends (3 frames each); no audio frame
    assert server.received == expected


async def test_sending_on_a_closed_connection_raises_connection_closed(peer) -> None:
    server, url = peer
    ws = await connect(url, compression=None, create_connection=FastSendConnection)
    await server.connected.wait()
    assert server.server_side is not None
    await server.server_side.close()
    await asyncio.wait_for(ws.wait_closed(), 10)
    with pytest.raises(ConnectionClosed):
        await ws.send(p.encode_user_audio(b"\xff" * 160))


async def test_a_paused_transport_still_holds_the_sender_until_the_peer_reads(peer) -> None:
    server, url = peer
    async with connect(
        url, compression=None, create_connection=FastSendConnection, write_limit=2**14, max_size=None
    ) as ws:
        await server.connected.wait()
        server.hold()  # the peer stops reading: its socket buffer fills, then ours
        big = "x" * 2**19
        sent = 0
        while not ws.paused and sent < 64:
            await ws.send(big)  # returns at once until the transport pauses
            sent += 1
        assert ws.paused
        held = asyncio.create_task(ws.send(p.encode_user_audio(b"\x01" * 160)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not held.done()  # flow control: the send waits for the peer
        server.release()
        await asyncio.wait_for(held, 10)
        await server.received_count(sent + 1)
    assert [len(m) for m in server.received] == [len(big)] * sent + [len(p.encode_user_audio(b"\x01" * 160))]
    assert server.received[-1] == p.encode_user_audio(b"\x01" * 160)
