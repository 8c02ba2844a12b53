"""ElevenLabs client tools the bridge implements: ending and transferring the call.

Every `client_tool_call` needs a `client_tool_result` or the agent waits (docs/elevenlabs.md#client-tools):
* `end_call` → HangUp, answered at once.
* `transfer_call` / `transfer_to_number` → TransferCall (destination from `phone_number`, `destination`,
  `transfer_number` or `number`), answered only when the edge's TransferResult comes back (after the words
  before it were heard): success, or `is_error: true` with the reason (destination not allowed...), after
  which the conversation goes on.
* Any other tool is answered `is_error: true`.
* A TransferResult with no tool call waiting (asked for in a conversation of the call that has dropped
  since, resume.py) is told to this one as a `contextual_update`: it must not believe the call moved.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable

from voicebridge.v1 import agent_pb2, common_pb2

from . import protocol as p

log = logging.getLogger(__name__)

END_CALL_TOOLS = {"end_call"}
TRANSFER_TOOLS = {"transfer_call", "transfer_to_number"}
DESTINATION_PARAMS = ("phone_number", "destination", "transfer_number", "number")


class ClientTools:
    """One conversation's tool calls. `send` writes a frame to ElevenLabs (a closed socket is the
    reader's to report, so it must not raise for that); `emit` queues a message for media in order."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        emit: Callable[[agent_pb2.ConverseResponse], None],
    ) -> None:
        self._send = send
        self._emit = emit
        # Transfer tool calls awaiting the edge's TransferResult: (destination, tool_call_id), oldest first.
        self._transfers: collections.deque[tuple[str, str]] = collections.deque()

    async def on_call(self, call: p.ClientToolCall) -> None:
        params = call.parameters
        reason = str(params.get("reason") or "")
        if call.tool_name in END_CALL_TOOLS:
            await self._result(call.tool_call_id, "Call will end after the current message.")
            self._emit(agent_pb2.ConverseResponse(hangup=common_pb2.HangUp(reason=reason or "end_call")))
            return
        if call.tool_name in TRANSFER_TOOLS:
            destination = next((str(params[k]) for k in DESTINATION_PARAMS if params.get(k)), "")
            if not destination:
                names = ", ".join(DESTINATION_PARAMS)
                await self._result(call.tool_call_id, f"No destination: pass one of {names}.", is_error=True)
                return
            self._transfers.append((destination, call.tool_call_id))  # answered by on_transfer_result
            self._emit(
                agent_pb2.ConverseResponse(
                    transfer=common_pb2.TransferCall(destination=destination, reason=reason)
                )
            )
            return
        log.warning("agent called unknown client tool %r", call.tool_name)
        await self._result(call.tool_call_id, f"Unknown client tool: {call.tool_name}", is_error=True)

    async def on_transfer_result(self, outcome: common_pb2.TransferResult) -> None:
        """Answer the transfer tool call this outcome belongs to with what really happened."""
        match = next((t for t in self._transfers if t[0] == outcome.destination), None)
        if match is None and self._transfers:
            match = self._transfers[0]
        if (
            match is None
        ):  # asked for in an earlier conversation of the call (resume.py): say what became of it
            log.info("transfer result with no transfer tool call waiting: told as context")
            outcome_text = (
                "was carried out" if outcome.transferred else f"failed: {outcome.detail or 'no reason given'}"
            )
            await self._send(
                p.encode_contextual_update(
                    f"The transfer of the call to {outcome.destination} asked for earlier {outcome_text}."
                    + ("" if outcome.transferred else " The call was not transferred and goes on with you.")
                )
            )
            return
        self._transfers.remove(match)
        if outcome.transferred:
            await self._result(match[1], f"The call is being transferred to {match[0]}.")
            return
        detail = outcome.detail or "the transfer failed"
        await self._result(
            match[1],
            f"Transfer to {match[0]} failed: {detail}. The call was not transferred and goes on with you.",
            is_error=True,
        )

    async def _result(self, tool_call_id: str, result: str, is_error: bool = False) -> None:
        await self._send(p.encode_client_tool_result(tool_call_id, result, is_error))
