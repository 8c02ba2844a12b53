"""The edge's HTTP API as an OpenAPI document: the file checked in at docs/openapi.json.

The edge does not serve it (its port faces the internet); tests/edge/test_openapi.py fails when the
checked-in file differs from what the code describes. Regenerate it after changing a route:

    .venv/bin/python -m voicebridge.edge.openapi docs/openapi.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from voicebridge.runtime.config import Env

from .config import EdgeSettings
from .wiring import build_app


def schema() -> dict[str, Any]:
    """The OpenAPI document of the edge as `build_app` wires it (no environment: the defaults)."""
    return build_app(EdgeSettings.from_env(Env({}))).openapi()


def render() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m voicebridge.edge.openapi OUT.json", file=sys.stderr)
        return 2
    with open(args[0], "w", encoding="utf-8") as out:
        out.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
