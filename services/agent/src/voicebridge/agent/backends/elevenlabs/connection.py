"""The ConvAI WebSocket connection, with a cheaper path for the frames sent many times a second.

Why: the agent writes one `user_audio_chunk` text frame per 20 ms caller frame per call, and each
`websockets` `send()` enters an async context manager (`send_context`) that checks the state, writes,
drains and handles close timeouts: about a tenth of the agent's CPU under load (docs/performance.md).
When the connection is open, nothing else is mid-send (a fragmented message), the transport is not
closing and not paused by flow control, that context has nothing to do but write: `send()` then
frames the text itself (client_frames.py: no Frame object, no system call per masking key) and
writes it directly. In every other case it is the library's own `send()`, so
closing, errors and back-pressure behave exactly as the library defines them (pinned in
requirements/constraints.txt; tests/agent/elevenlabs/test_connection.py holds it to that).
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from .client_frames import MaskKeys, masked_text_frame


class FastSendConnection(ClientConnection):
    """A `ClientConnection` whose `send(str)` writes at once when nothing stands in the way."""

    _mask_keys = MaskKeys()  # shared by every connection of the process: one loop, one pool

    async def send(self, message: Any, text: bool | None = None) -> None:
        if (
            type(message) is str
            and text is None
            and self.send_in_progress is None
            and not self.paused
            and self.protocol.state is State.OPEN
            and not self.transport.is_closing()
            and not self.protocol.extensions
            and not self.protocol.expect_continuation_frame
        ):
            # What protocol.send_text would queue, in order behind anything already queued.
            self.protocol.writes.append(masked_text_frame(message.encode(), self._mask_keys.next()))
            try:
                self.send_data()
            except Exception as exc:  # what send_context does with a failed write
                self.set_connection_exc(exc)
                self.transport.abort()
                await asyncio.shield(self.connection_lost_waiter)
                raise self.close_exc from None
            return
        await super().send(message, text=text)
