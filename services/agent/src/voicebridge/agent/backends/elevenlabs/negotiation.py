"""Which audio formats a conversation uses: those its metadata announces, if media offered them.

The formats are agent settings that no client can override, so `conversation_initiation_metadata` is the
only place they are learnt (docs/elevenlabs.md#audio-formats). A pair media cannot serve refuses the call
with a message saying what to change, instead of audio at the wrong speed.
"""

from __future__ import annotations

from voicebridge.agent.formats import format_from_name, format_name, offered
from voicebridge.v1 import agent_pb2, common_pb2

from ..base import SessionRefused
from . import protocol as p


def bytes_per_s(fmt: common_pb2.AudioFormat) -> int:
    width = 2 if fmt.encoding == common_pb2.AUDIO_ENCODING_PCM_S16LE else 1
    return fmt.sample_rate_hz * width


def _known(name: str) -> common_pb2.AudioFormat | None:
    try:
        return format_from_name(name)
    except ValueError:
        return None


def negotiate(metadata: p.Metadata, start: agent_pb2.SessionStart, agent_id: str) -> agent_pb2.SessionReady:
    """The SessionReady for these metadata, or SessionRefused(UNSUPPORTED_FORMAT)."""
    input_format = _known(metadata.user_input_audio_format)
    output_format = _known(metadata.agent_output_audio_format)
    if (
        input_format is None
        or output_format is None
        or not offered(input_format, list(start.input_formats))
        or not offered(output_format, list(start.output_formats))
    ):
        ins = ", ".join(format_name(f) for f in start.input_formats) or "none"
        outs = ", ".join(format_name(f) for f in start.output_formats) or "none"
        raise SessionRefused(
            common_pb2.END_REASON_UNSUPPORTED_FORMAT,
            f"ElevenLabs agent {agent_id} uses input {metadata.user_input_audio_format} and output "
            f"{metadata.agent_output_audio_format}; media offers input [{ins}] and output [{outs}]. "
            "Set the agent's formats (ulaw_8000 both ways for Twilio) or enable a matching media format.",
            common_pb2.ERROR_CODE_FAILED_PRECONDITION,
        )
    return agent_pb2.SessionReady(
        input_format=input_format, output_format=output_format, conversation_id=metadata.conversation_id
    )
