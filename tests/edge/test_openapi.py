"""The edge's OpenAPI document: docs/openapi.json is what the code describes, it describes every HTTP
route with its models, and the edge does not serve it on its internet-facing port."""

from __future__ import annotations

import json
from pathlib import Path

from edge_helpers import ClientFactory

from voicebridge.edge import openapi

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_checked_in_schema_is_what_the_routes_describe():
    assert json.loads(DOC.read_text()) == openapi.schema(), (
        "docs/openapi.json is stale: run .venv/bin/python -m voicebridge.edge.openapi docs/openapi.json"
    )


def test_every_http_route_is_documented_with_its_models():
    schema = openapi.schema()
    assert set(schema["paths"]) == {
        "/healthz",
        "/readyz",
        "/twilio/voice",
        "/twilio/stream-status",
        "/twilio/stream-action",
        "/twilio/call-status",
        "/calls",
    }
    place = schema["paths"]["/calls"]["post"]
    body = place["requestBody"]["content"]["application/json"]["schema"]
    assert (body["required"], body["additionalProperties"]) == (["to"], False)
    assert set(body["properties"]) == {"to", "from", "variables"}
    assert place["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/CallCreated")
    assert {"400", "401", "403", "413", "422", "502", "503"} <= set(place["responses"])
    assert place["security"] == [{"EDGE_API_TOKEN": []}]
    ready = schema["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(ready)  # 503 while draining
    voice = schema["paths"]["/twilio/voice"]["post"]
    assert "application/x-www-form-urlencoded" in voice["requestBody"]["content"]
    assert set(voice["responses"]["200"]["content"]) == {"text/xml"}
    action = schema["paths"]["/twilio/stream-action"]["post"]
    assert set(action["responses"]["200"]["content"]) == {"text/xml"}
    assert {"400", "403", "413"} <= set(action["responses"])
    assert {(p["name"], p["in"]) for p in action["parameters"]} == {
        ("X-Twilio-Signature", "header"),
        ("attempt", "query"),
    }


async def test_the_edge_serves_no_schema_or_docs_pages(edge_client: ClientFactory) -> None:
    client = edge_client()
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert (await client.get(path)).status_code == 404, path
