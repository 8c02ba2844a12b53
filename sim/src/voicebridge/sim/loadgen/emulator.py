"""The ConvAI emulator in a child process of its own, counting the audio bytes it receives and sends
(the load generator's lost-frame figures), so its CPU is not the services' CPU."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
from typing import Any

import uvloop


def _emulator_main(port_out: Any, stop: Any, totals_out: Any, requires_auth: bool = False) -> None:
    """Child process: the ConvAI emulator with byte counters, until `stop` is set. With
    `requires_auth` its agent is private: every conversation needs a signed URL."""
    from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, default_scenario

    totals = {"sessions": 0, "received_bytes": 0, "sent_bytes": 0}

    async def counted(session: Any) -> None:
        send_audio = session.send_audio

        async def send_and_count(raw: bytes, *args: Any, **kwargs: Any) -> int:
            totals["sent_bytes"] += len(raw)
            return await send_audio(raw, *args, **kwargs)

        session.send_audio = send_and_count
        totals["sessions"] += 1
        try:
            await default_scenario(session)
        finally:
            with contextlib.suppress(Exception):
                await session.wait_closed(timeout=30)
            totals["received_bytes"] += len(session.received_audio) + len(session.early_audio)

    async def run() -> None:
        emulator = ConvAIEmulator(host="127.0.0.1", port=0)
        emulator.add_agent(
            "load",
            AgentScript(
                input_format="ulaw_8000",
                output_format="ulaw_8000",
                scenario=counted,
                requires_auth=requires_auth,
                keep_audio_messages=False,
            ),
        )
        await emulator.start()
        gc.freeze()  # what exists now lives to the end: the collector's full passes need not walk it
        port_out.put(emulator.base_url)
        await asyncio.to_thread(stop.wait)
        await asyncio.sleep(1.0)  # let the last sessions' finally blocks count
        await emulator.stop()
        totals_out.put(totals)

    uvloop.run(run())  # the load's own overhead is not what is measured: keep it small


class EmulatorProcess:
    def __init__(self, requires_auth: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._urls, self._totals, self._stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.proc = ctx.Process(
            target=_emulator_main,
            args=(self._urls, self._stop, self._totals, requires_auth),
            daemon=True,
        )
        self.base_url = ""

    def start(self) -> str:
        self.proc.start()
        self.base_url = self._urls.get(timeout=30)
        return self.base_url

    def stop(self) -> dict[str, int] | None:
        self._stop.set()
        try:
            return self._totals.get(timeout=60)
        except Exception:
            return None
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
