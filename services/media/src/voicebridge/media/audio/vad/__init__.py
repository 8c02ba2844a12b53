"""Voice activity detection for barge-in: the `VoiceActivityDetector` interface and its webrtcvad detector."""

from __future__ import annotations

from voicebridge.media.audio.vad.base import VadEvent, VoiceActivityDetector
from voicebridge.media.audio.vad.webrtc import VadConfig, WebRtcVad

__all__ = ["VadConfig", "VadEvent", "VoiceActivityDetector", "WebRtcVad"]
