"""Time as the media service sees it: the shared clock of voicebridge.runtime (a virtual one in tests)."""

from voicebridge.runtime.clock import Clock, LoopClock

__all__ = ["Clock", "LoopClock"]
