"""The ElevenLabs Agents backend: `ElevenLabsBackend(ElevenLabsSettings(agent_id=...))`."""

from .backend import ElevenLabsBackend
from .session import ElevenLabsSession
from .settings import ElevenLabsSettings

__all__ = ["ElevenLabsBackend", "ElevenLabsSession", "ElevenLabsSettings"]
