"""`voicebridge-convai-emulator`: the emulator by hand (`--port 8765`). The default agent greets with two
short beeps, then echoes each caller utterance back, and pings every 5 s. Every agent id is accepted
unless `--strict-agent` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from .script import AgentScript
from .server import ConvAIEmulator
from .wire import FORMATS

log = logging.getLogger(__name__)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="voicebridge-convai-emulator",
        description=(
            "Loopback ElevenLabs Agents (ConvAI) server. The default agent beeps twice as a greeting,"
            " then echoes each caller utterance back after 700 ms of quiet, and pings every 5 s."
            " Point the agent service at it with ELEVENLABS_BASE_URL=http://HOST:PORT."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--agent-id", default="agent_emulator", help="the agent id registered")
    parser.add_argument("--strict-agent", action="store_true", help="refuse (1008) other agent ids")
    parser.add_argument("--input-format", default="pcm_16000", choices=FORMATS)
    parser.add_argument("--output-format", default="pcm_16000", choices=FORMATS)
    parser.add_argument("--requires-auth", action="store_true", help="private agent: signed URL needed")
    parser.add_argument("--api-key", default=None, help="the only xi-api-key accepted (default: any)")
    return parser.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    script = AgentScript(args.input_format, args.output_format, requires_auth=args.requires_auth)
    emulator = ConvAIEmulator(args.host, args.port, args.api_key, None if args.strict_agent else script)
    emulator.add_agent(args.agent_id, script)
    await emulator.start()
    log.info("ConvAI emulator on %s (agent %s, in %s, out %s)", emulator.base_url, args.agent_id,
             args.input_format, args.output_format)  # fmt: skip
    try:
        await asyncio.Future()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))
