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

The parts: `config` (the call as Twilio knows it: sids, signature, webhook form, TwiML), `wire` (the
messages, pure encode/check), `playout` (Twilio's playout buffer and what was heard), `caller` (the
session on the socket) and `cli` (`voicebridge-caller`). Everything is importable from here.
"""

from voicebridge.sim.wav import read_wav_as_ulaw, write_wav

from .caller import TwilioCaller
from .cli import GREETING_QUIET_S, main
from .config import CallerConfig, stream_from_twiml
from .playout import TURN_GAP_S
from .wire import RATE, SILENCE

__all__ = [
    "GREETING_QUIET_S",
    "RATE",
    "SILENCE",
    "TURN_GAP_S",
    "CallerConfig",
    "TwilioCaller",
    "main",
    "read_wav_as_ulaw",
    "stream_from_twiml",
    "write_wav",
]
