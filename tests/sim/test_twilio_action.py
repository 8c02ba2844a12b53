"""The simulated Twilio follows `<Connect action>` when a stream closes without the caller hanging up,
against a scripted fake edge: a websockets server for the streams and a small HTTP app for the action
URL, both on loopback; and the balancer's choice of edge (EdgePool)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection, serve

from voicebridge.sim.twilio_caller import (
    AllEdgesDown,
    CallerConfig,
    EdgePool,
    TwilioCaller,
    fixed,
    twiml_instruction,
)

TOKEN = "sim-auth-token"
TIMEOUT_S = 10.0  # failure detector


class ScriptedEdge:
    """Streams: each is recorded; the first is closed by the server after `start` (its edge 'died').
    Action: the first request re-opens a stream (`?attempt=1` on its own action), the next hangs up."""

    def __init__(self) -> None:
        self.streams: list[list[dict[str, Any]]] = []
        self.actions: list[tuple[str, dict[str, str], bool]] = []  # (url, form, signature valid)
        self.changed = asyncio.Event()
        self.ws_url = self.http_url = ""

    async def _stream(self, ws: ServerConnection) -> None:
        got: list[dict[str, Any]] = []
        self.streams.append(got)
        first = len(self.streams) == 1
        async for frame in ws:
            got.append(orjson.loads(frame))
            self._notify()
            if first and got[-1]["event"] == "media":
                await ws.close(1011, "edge gone")  # as if the edge died mid-call
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/twilio/stream-action")
        async def action(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            url = f"{self.http_url}/twilio/stream-action" + (
                f"?{request.url.query}" if request.url.query else ""
            )
            valid = RequestValidator(TOKEN).validate(url, form, request.headers.get("X-Twilio-Signature", ""))
            self.actions.append((url, form, valid))
            self._notify()
            if len(self.actions) > 1:
                return Response("<Response><Hangup/></Response>", media_type="text/xml")
            again = f"{self.http_url}/twilio/stream-action?attempt=1"
            body = (
                f'<Response><Connect action="{again}" method="POST"><Stream url="{self.ws_url}">'
                '<Parameter name="vb_reopen" value="1"/></Stream></Connect><Hangup/></Response>'
            )
            return Response(body, media_type="text/xml")

        return app

    async def until(self, check: Any) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not check():
                await self.changed.wait()


@pytest.fixture
async def edge() -> AsyncIterator[ScriptedEdge]:
    scripted = ScriptedEdge()
    server = await serve(scripted._stream, "127.0.0.1", 0)
    scripted.ws_url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/twilio/media"
    http = uvicorn.Server(uvicorn.Config(scripted.app(), host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(http.serve())
    while not http.started:
        assert not task.done()
        await asyncio.sleep(0.005)  # uvicorn exposes no start-up event
    scripted.http_url = f"http://127.0.0.1:{http.servers[0].sockets[0].getsockname()[1]}"
    yield scripted
    http.should_exit = True
    await task
    server.close()
    await server.wait_closed()


async def test_a_stream_closed_by_the_server_is_followed_to_the_action_url_and_reopened(
    edge: ScriptedEdge,
) -> None:
    cfg = CallerConfig(
        url=edge.ws_url,
        call_sid="CA" + "1" * 32,
        custom_parameters={"vb_token": "t"},
        auth_token=TOKEN,
        action_url=f"{edge.http_url}/twilio/stream-action",
    )
    call = TwilioCaller(cfg)
    await call.connect()
    await edge.until(lambda: len(edge.streams) == 2 and any(m["event"] == "media" for m in edge.streams[1]))
    assert not call.closed  # the call outlived its first stream

    url, form, valid = edge.actions[0]
    assert valid  # X-Twilio-Signature as Twilio computes it
    assert url == f"{edge.http_url}/twilio/stream-action"
    assert (form["CallSid"], form["CallStatus"], form["Direction"]) == (
        cfg.call_sid,
        "in-progress",
        "inbound",
    )
    assert {"AccountSid", "From", "To", "ApiVersion"} <= set(form)

    first, second = edge.streams
    start1, start2 = first[1]["start"], second[1]["start"]
    assert second[0]["event"] == "connected"
    assert start2["callSid"] == start1["callSid"] == cfg.call_sid
    assert start2["streamSid"] != start1["streamSid"]
    assert start2["customParameters"] == {"vb_reopen": "1"}  # the new TwiML's, not the old stream's
    assert second[1]["sequenceNumber"] == "1"
    media = next(m for m in second if m["event"] == "media")
    assert (media["media"]["chunk"], media["streamSid"]) == ("1", start2["streamSid"])
    assert call.stream_sids == [start1["streamSid"], start2["streamSid"]]
    assert call.actions == [(url, 200, "stream")]

    await call.hangup()  # the caller hangs up on the second stream: stop, and no action request
    await edge.until(lambda: second[-1]["event"] == "stop")
    assert len(edge.actions) == 1
    assert call.closed_by == "caller"


async def test_the_actions_hangup_ends_the_call(edge: ScriptedEdge) -> None:
    cfg = CallerConfig(url=edge.ws_url, auth_token=TOKEN, action_url=f"{edge.http_url}/twilio/stream-action")
    edge.actions.append(("(already asked once)", {}, True))  # so the first action answers <Hangup/>
    call = TwilioCaller(cfg)
    await call.connect()
    await call.wait_closed(TIMEOUT_S)
    assert call.closed_by == "server"
    assert call.actions == [(f"{edge.http_url}/twilio/stream-action", 200, "hangup")]
    assert len(edge.streams) == 1


async def test_without_an_action_a_server_close_ends_the_call(edge: ScriptedEdge) -> None:
    call = TwilioCaller(CallerConfig(url=edge.ws_url))
    await call.connect()
    await call.wait_closed(TIMEOUT_S)
    assert (call.closed_by, call.close_code, call.actions) == ("server", 1011, [])


def _refusing_address() -> str:
    """A loopback address whose port nobody listens on (a dead edge: connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_the_pool_skips_a_refusing_edge_and_keeps_the_call_on_the_edge_that_answered() -> None:
    dead, live, other = _refusing_address(), "127.0.0.1:1111", "127.0.0.1:2222"
    tried: list[str] = []

    async def attempt(url: str) -> str:
        tried.append(url)
        if dead in url:
            raise ConnectionRefusedError(url)
        return url

    pool = EdgePool(fixed([dead, live, other]))
    assert await pool.reach("ws://public.test/twilio/media?x=1", attempt) == f"ws://{live}/twilio/media?x=1"
    assert tried == [f"ws://{dead}/twilio/media?x=1", f"ws://{live}/twilio/media?x=1"]
    assert pool.current == live
    assert pool.order()[0] == live  # affinity: the call's next request goes to the same edge
    with pytest.raises(AllEdgesDown):
        await EdgePool(fixed([dead])).reach("http://public.test/x", attempt)


@pytest.mark.parametrize(
    ("twiml", "stream", "action", "params"),
    [
        ("<Response><Hangup/></Response>", None, None, {}),
        ("<Response/>", None, None, {}),
        (
            '<Response><Connect action="https://p/a?attempt=1" method="POST"><Stream url="wss://p/m">'
            '<Parameter name="k" value="v"/></Stream></Connect><Hangup/></Response>',
            "wss://p/m",
            "https://p/a?attempt=1",
            {"k": "v"},
        ),
        ('<Response><Connect><Stream url="wss://p/m"/></Connect></Response>', "wss://p/m", None, {}),
    ],
)
def test_twiml_instruction(
    twiml: str, stream: str | None, action: str | None, params: dict[str, str]
) -> None:
    step = twiml_instruction(twiml)
    assert (step.stream_url, step.action, step.parameters) == (stream, action, params)


def test_twiml_instruction_refuses_what_twilio_would_not_run() -> None:
    with pytest.raises(ValueError, match="Response"):
        twiml_instruction("<Nope/>")
    with pytest.raises(ValueError, match="Stream"):
        twiml_instruction("<Response><Connect/></Response>")
