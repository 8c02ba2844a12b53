"""`voicebridge-call`: place an outbound call through a running edge's calls API.

    EDGE_API_TOKEN=… voicebridge-call --to +15551234567 [--from +1555…] [--var name=Ada] [--edge-url URL]

Why through the edge and not straight to Twilio: the edge holds the stream-token secret that signs the
TwiML, receives the call's status callbacks, and is the one place outbound calls are authorised and
counted. The token comes from the environment only (never argv, which other users can read in `ps`).
Prints the API's JSON answer; exit status 0 when the call was placed, 1 when refused, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from .config import CALLS_API_PATH


def _variables(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"voicebridge-call: --var needs name=value, got {item!r}")
        out[name] = value
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicebridge-call", description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", required=True, help="the number to call, E.164 (+15551234567)")
    parser.add_argument("--from", dest="from_", help="caller id, E.164 (default: TWILIO_FROM_NUMBER)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="agent variable")
    parser.add_argument(
        "--edge-url",
        default=os.environ.get("EDGE_URL", "http://127.0.0.1:8000"),
        help="the edge's base URL (default $EDGE_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the edge")
    return parser.parse_args(argv)


def place_call(edge_url: str, token: str, body: dict[str, object], timeout: float) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of `POST /calls`."""
    request = urllib.request.Request(  # noqa: S310 - the operator chooses the edge URL
        edge_url.rstrip("/") + CALLS_API_PATH,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"error": raw.decode(errors="replace")[:300]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token = os.environ.get("EDGE_API_TOKEN", "")
    if not token:
        print("voicebridge-call: set EDGE_API_TOKEN (the edge's calls API token)", file=sys.stderr)
        return 2
    body: dict[str, object] = {"to": args.to, "variables": _variables(args.var)}
    if args.from_:
        body["from"] = args.from_
    try:
        status, answer = place_call(args.edge_url, token, body, args.timeout)
    except (urllib.error.URLError, OSError) as exc:
        print(f"voicebridge-call: cannot reach the edge at {args.edge_url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0 if status == 201 else 1


if __name__ == "__main__":
    sys.exit(main())
