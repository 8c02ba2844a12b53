"""A simulated Twilio caller: opens a Media Streams WebSocket exactly as Twilio does for <Connect><Stream>.

An independent peer (it never imports ``voicebridge.edge``) that writes Twilio's side of the protocol
itself (https://www.twilio.com/docs/voice/media-streams/websocket-messages):

- sends ``connected``, then ``start`` (``sequenceNumber`` "1"), then one ``media`` frame every
  ``frame_ms`` against an absolute monotonic clock: caller voice queued by :meth:`TwilioCaller.speak`,
  μ-law silence (0xFF) otherwise. Numeric fields are JSON strings; ``chunk`` counts from "1";
  ``timestamp`` is ms since the stream started.
- plays what the server sends like Twilio's playout buffer: ``media`` payloads of any size go into a
  FIFO played at exactly 8000 samples/s in real time; a ``mark`` is echoed once the audio queued before
  it has played (at once if nothing is buffered); ``clear`` drops buffered audio and echoes every
  pending mark at once.
- validates the server: text frames only (else 31950) holding ``media``/``mark``/``clear`` with the
  right ``streamSid``, valid base64, a ``mark.name`` and no extra fields (else 31951). Invalid messages
  are recorded in :attr:`TwilioCaller.violations` and ignored, not played.

Time is kept in samples since the stream started (the ``start`` message), so the heard timeline is exact.

When the stream closes without the caller hanging up and its TwiML had a ``<Connect action>``, the
caller requests the action URL like Twilio and follows the TwiML it gets (a new stream for the same
call, or the end of the call); with several edges behind one public URL, `balancer.EdgePool` does the
load balancer's part (docs/failover.md#edge-dies).

The parts: `config` (the call as Twilio knows it: sids, signature, webhook forms, TwiML), `wire` (the
messages, pure encode/check), `playout` (Twilio's playout buffer and what was heard), `caller` (the
session on the socket, and the action URL), `balancer` (the edges behind the public URL) and `cli`
(`voicebridge-caller`). Everything is importable from here.
"""

from voicebridge.sim.wav import read_wav_as_ulaw, write_wav

from .balancer import AllEdgesDown, EdgePool, fixed
from .caller import TwilioCaller
from .cli import GREETING_QUIET_S, main
from .config import CallerConfig, Instruction, stream_from_twiml, twiml_instruction
from .playout import TURN_GAP_S
from .wire import RATE, SILENCE

__all__ = [
    "GREETING_QUIET_S",
    "RATE",
    "SILENCE",
    "TURN_GAP_S",
    "AllEdgesDown",
    "CallerConfig",
    "EdgePool",
    "Instruction",
    "TwilioCaller",
    "fixed",
    "main",
    "read_wav_as_ulaw",
    "stream_from_twiml",
    "twiml_instruction",
    "write_wav",
]
