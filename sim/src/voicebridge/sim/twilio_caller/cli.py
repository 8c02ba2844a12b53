"""`voicebridge-caller`: place one simulated Twilio call from the command line and print what was heard."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from voicebridge.sim.voice import speech_like
from voicebridge.sim.wav import read_wav_as_ulaw, write_wav

from .balancer import EdgePool, fixed
from .caller import TwilioCaller
from .config import CallerConfig

GREETING_QUIET_S = 0.6  # --wait-greeting: the greeting is over once nothing has played for this long


def _parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--param needs key=value, got {item!r}")
        params[key] = value
    return params


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = CallerConfig(
        url=args.url or "",
        custom_parameters=_parse_params(args.param),
        auth_token=args.auth_token,
        signature_url=args.signature_url,
        edges=EdgePool(fixed(args.edge)) if args.edge else None,
    )
    voice = read_wav_as_ulaw(args.play) if args.play else (speech_like() if args.speak else b"")
    call = TwilioCaller(cfg)
    if args.voice_url:  # as Twilio places an inbound call: the Voice URL's TwiML, then its action URL
        await call.dial(args.voice_url)
    async with call:
        try:
            async with asyncio.timeout(args.seconds):
                if args.wait_greeting:  # speaking at once would barge in on the greeting
                    await call.wait_agent_quiet(GREETING_QUIET_S, None)
                await call.speak(voice)
                if args.hangup_after_silence is not None:
                    await call.wait_agent_quiet(args.hangup_after_silence, None, require_audio=False)
                else:
                    await call.wait_closed(args.seconds)
        except TimeoutError:
            pass
        await call.hangup()
    if args.record:
        Path(args.record).parent.mkdir(parents=True, exist_ok=True)
        write_wav(args.record, call.heard_ulaw)
    return call.summary()


def main(argv: list[str] | None = None) -> int:
    """``voicebridge-caller``: place one simulated Twilio call against a Media Streams endpoint."""
    parser = argparse.ArgumentParser(prog="voicebridge-caller", description=main.__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="media WebSocket, e.g. ws://127.0.0.1:8000/twilio/media")
    target.add_argument(
        "--voice-url",
        help="start at the Voice URL (e.g. http://127.0.0.1:8000/twilio/voice) and follow its TwiML, "
        "the <Connect action> included, as Twilio does",
    )
    parser.add_argument(
        "--edge",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an edge behind the URLs' public host (repeat): requests and streams go to the call's edge, "
        "or the next one when it refuses the connection",
    )
    voice = parser.add_mutually_exclusive_group()
    voice.add_argument("--play", help="WAV to speak as the caller, in real time")
    voice.add_argument(
        "--speak", action="store_true", help="speak a built-in 1.2 s speech-like phrase (no WAV needed)"
    )
    parser.add_argument(
        "--wait-greeting",
        action="store_true",
        help=f"speak only once the agent's greeting has played ({GREETING_QUIET_S:g} s of quiet after it)",
    )
    parser.add_argument("--record", help="write what the caller heard to this WAV (8 kHz, 16-bit)")
    parser.add_argument("--seconds", type=float, default=20.0, help="longest call duration (default 20)")
    parser.add_argument(
        "--hangup-after-silence",
        type=float,
        metavar="S",
        help="after speaking, hang up once no agent audio has played for S seconds",
    )
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="<Parameter>")
    parser.add_argument("--auth-token", help="sign the upgrade with X-Twilio-Signature")
    parser.add_argument("--signature-url", help="public wss URL to sign (default: --url with ws→wss)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    summary = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(summary))
    else:
        first = summary["time_to_first_agent_audio_s"]
        print(f"call {summary['call_sid']}: {summary['duration_s']} s, closed by {summary['closed_by']}")
        print(f"time to first agent audio: {'-' if first is None else f'{first:.3f} s'}")
        spans = " ".join(f"[{t['start_s']}–{t['end_s']}]" for t in summary["turns"])
        print(f"agent turns: {len(summary['turns'])} {spans}")
        print(f"response latencies: {summary['response_latencies_s']}")
        print(f"clears received: {summary['clears_received']}, marks echoed: {summary['marks_echoed']}")
        if summary["violations"]:
            print("protocol violations:", *summary["violations"], sep="\n  ")
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
