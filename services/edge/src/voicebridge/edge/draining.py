"""The edge's SIGTERM: drain the Twilio streams in progress, then stop (runtime/drain.py).

Why: uvicorn's own shutdown closes every WebSocket at once (1012), which hangs up on every caller,
and Twilio cannot move a live stream to another edge. So the first SIGTERM/SIGINT only starts the
drain: `/readyz` fails (the Ingress sends new calls elsewhere; a stream that arrives anyway is still
served), the streams in progress run on for up to DRAIN_DEADLINE_S, those left hear media's goodbye
and are hung up, and then uvicorn stops as usual and the process exits 0. A second signal stops at
once, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from types import FrameType

import uvicorn

from voicebridge.runtime.drain import Drain

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain, deadline_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._deadline_s = deadline_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._draining is not None or self._drain.draining:
            super().handle_exit(sig, frame)  # not serving yet, or a second signal: stop now
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._draining is None:
            # A context of its own: not the one of whichever call the signal interrupted (its log id).
            self._draining = asyncio.get_running_loop().create_task(
                self._run_drain(), name="edge-drain", context=contextvars.Context()
            )

    async def _run_drain(self) -> None:
        await self._drain.run(self._deadline_s, lambda session: session.say_goodbye())
        log.info("edge drained; stopping")
        self.should_exit = True
