"""Edge unit-test fixtures: the fake Twilio REST API and the edge app on an in-process ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from edge_helpers import ACCOUNT_SID, AUTH_TOKEN, ClientFactory, make_settings

from voicebridge.edge.wiring import build_app
from voicebridge.sim.twilio_rest_fake import TwilioRestFake


@pytest.fixture
async def fake_twilio() -> AsyncIterator[TwilioRestFake]:
    async with TwilioRestFake({ACCOUNT_SID: AUTH_TOKEN}) as fake:
        yield fake


@pytest.fixture
async def edge_client(fake_twilio: TwilioRestFake) -> AsyncIterator[ClientFactory]:
    """`edge_client(**env)`: an httpx client on a fresh edge app (REST pointed at the fake)."""
    clients: list[httpx.AsyncClient] = []

    def factory(**env: str) -> httpx.AsyncClient:
        settings = make_settings(TWILIO_API_BASE_URL=fake_twilio.base_url, **env)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(settings)), base_url="http://edge"
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
