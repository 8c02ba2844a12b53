"""The voicebridge-caller CLI against a loopback echo-ish fake edge."""

import asyncio
import base64
import json
import sys
from pathlib import Path

import numpy as np
import orjson
from websockets.asyncio.server import ServerConnection, serve

from voicebridge.sim.wav import pcm16_to_ulaw, read_wav_as_ulaw, write_wav


async def _greeter(ws: ServerConnection) -> None:
    """Says 300 ms of audio right after start, then only listens."""
    async for frame in ws:
        msg = orjson.loads(frame)
        if msg["event"] == "start":
            sid = msg["streamSid"]
            payload = base64.b64encode(b"\x15" * 2400).decode()
            await ws.send(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}}))
            await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "greeting"}}))


async def test_cli_plays_wav_records_heard_audio_and_prints_json(tmp_path: Path) -> None:
    write_wav(tmp_path / "caller.wav", pcm16_to_ulaw(np.full(1600, 3000, dtype=np.int16)))
    async with serve(_greeter, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicebridge.sim.twilio_caller",
            "--url",
            f"ws://127.0.0.1:{port}/twilio/media",
            "--play",
            str(tmp_path / "caller.wav"),
            "--record",
            str(tmp_path / "heard.wav"),
            "--seconds",
            "10",
            "--hangup-after-silence",
            "0.5",
            "--param",
            "token=abc",
            "--json",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    summary = json.loads(out)
    assert summary["bytes_heard"] == 2400
    assert len(summary["turns"]) == 1
    assert summary["marks_echoed"] == 1
    assert summary["violations"] == []
    assert summary["closed_by"] == "caller"
    assert read_wav_as_ulaw(tmp_path / "heard.wav").count(b"\x15") == 2400
