"""Which agent reply each ElevenLabs audio chunk belongs to, whatever the server's id numbering.

Why: the contract (agent.proto) names a reply by `response_id`, and media pauses, clears, refuses and
reports "heard" per reply. ElevenLabs documents the audio `event_id` only as a "sequential identifier
for the audio chunk"; one reply's chunks may share an id or each have their own. Taking the id as the
reply made a reply numbered per chunk resume after a local barge-in, and made "heard" count from the
start of the chunk. So replies are found from what the protocol does guarantee (docs/elevenlabs.md):

* a reply is opened by its first audio chunk after a boundary, and keeps every chunk until the next;
  a chunk with the same id as the one before belongs to the same reply (no two replies share an id);
* boundaries: the caller's final `user_transcript` (the next audio answers it), an `interruption`
  (the server stopped that reply), an `agent_response` when the open reply already has its text (one
  `agent_response` per reply, "sent with the first audio chunk": before or just after it), and, once
  two chunks in a row have shared an id (ids are then per reply), a change of id;
* ids are only ever compared as monotonic: an `interruption`'s id voids every chunk with an id <= it.

A reply's id is the event id of its first chunk (or of its `agent_response`, if that came first), raised
to stay above the previous reply's id, so logs line up with ElevenLabs' ids. Pure state, no I/O.
"""

from __future__ import annotations


class ReplyTracker:
    """Assigns chunks to replies and remembers which replies the caller or the server cut off."""

    def __init__(self, floor: int = 0) -> None:
        """`floor`: ids start above it (a conversation continuing a call numbers above the earlier one)."""
        self._last_reply = floor  # id of the newest reply opened
        self._open = 0  # the reply later audio joins; 0 after a boundary
        self._open_has_text = False
        self._open_has_audio = False
        self._last_event_id: int | None = None
        self._last_chunk_reply = 0  # the reply of the last chunk (a chunk with its id joins it)
        self._ids_per_reply = False
        self._void_through = 0  # replies with an id <= this are cut off
        self._void_chunks_through = 0  # chunks with an event id <= this are void (an interruption's id)

    @property
    def void_through(self) -> int:
        return self._void_through

    @property
    def last_reply(self) -> int:
        return self._last_reply

    def audio(self, event_id: int) -> int | None:
        """The reply an audio chunk belongs to, or None when it must not be played."""
        if event_id <= self._void_chunks_through:
            return None
        if event_id == self._last_event_id:  # no two replies share an id, in either numbering
            self._ids_per_reply = True
            reply = self._last_chunk_reply
        else:
            if self._open and self._open_has_audio and self._ids_per_reply:
                self._open = 0  # a new id, and ids are per reply: a new reply
            if not self._open:
                self._start(event_id, has_text=False)
            self._open_has_audio = True
            reply = self._last_chunk_reply = self._open
            self._last_event_id = event_id
        return None if reply <= self._void_through else reply

    def agent_response(self, event_id: int | None) -> int:
        """The agent's text for a reply: returns that reply's id (the open one, or the next)."""
        if self._open and not self._open_has_text:
            self._open_has_text = True
            return self._open
        self._start(event_id or 0, has_text=True)
        return self._open

    def user_turn(self) -> None:
        """The caller's turn ended (final transcript): the next audio is a new reply."""
        self._open = 0

    def server_interruption(self, event_id: int) -> int:
        """ElevenLabs cut the reply off: returns the reply id through which audio is now void."""
        self._void_chunks_through = max(self._void_chunks_through, event_id)
        self._void_through = max(self._void_through, self._open or self._last_reply)
        self._open = 0
        return self._void_through

    def caller_interrupted(self, reply_id: int) -> int:
        """Media stopped `reply_id` (local barge-in): it and the reply still arriving stay void until
        the next boundary, so the rest of a reply numbered per chunk cannot resume. Returns the bound."""
        self._void_through = max(self._void_through, reply_id)
        if self._open_has_audio and self._open:
            self._void_through = max(self._void_through, self._open)
        return self._void_through

    def next_reply(self) -> int:
        """A reply of the bridge's own (the apology prompt): a fresh id above everything seen."""
        self._last_reply = max(self._last_reply, self._void_chunks_through, self._last_event_id or 0) + 1
        self._open = 0  # nothing from the server joins it
        return self._last_reply

    def _start(self, event_id: int, has_text: bool) -> None:
        self._last_reply = max(event_id, self._last_reply + 1)
        self._open = self._last_reply
        self._open_has_text = has_text
        self._open_has_audio = False
