"""An ElevenLabs conversation that drops with an error mid-call is continued in a new one, told the call
so far (resume.py, docs/elevenlabs.md#resume); the apology remains the fallback. Against the ConvAI
emulator over real WebSockets, its DropsMidCall scenario recording what context reached each
continuing conversation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from prometheus_client import REGISTRY

from voicebridge.agent.backends.base import AgentSession, Outbox, SessionEndInfo
from voicebridge.agent.backends.elevenlabs import ElevenLabsBackend
from voicebridge.agent.prompts import load_prompt
from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, DropsMidCall, rms, silence, tone
from voicebridge.v1 import agent_pb2, common_pb2

Factory = Callable[..., ElevenLabsBackend]
FMT = "ulaw_8000"
GREETING = tone(FMT, 440, 300)
REPLY = tone(FMT, 660, 1000)
CONTINUED = tone(FMT, 550, 400)
VOICE = tone(FMT, 300, 400, level=0.5) + silence(FMT, 1000)  # an utterance, then a second of quiet
APOLOGY = load_prompt("apology", common_pb2.AUDIO_ENCODING_MULAW, 8000)


def make_start() -> agent_pb2.SessionStart:
    ulaw = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
    call = common_pb2.CallInfo(call_sid="CA00000000000000000000000000000015", stream_sid="MZ15")
    return agent_pb2.SessionStart(call=call, input_formats=[ulaw], output_formats=[ulaw])


def resumes(outcome: str) -> float:
    return REGISTRY.get_sample_value("agent_elevenlabs_resumes_total", {"outcome": outcome}) or 0.0


def failed_attempts(how: str) -> float:
    return REGISTRY.get_sample_value("agent_elevenlabs_resume_attempts_failed_total", {"how": how}) or 0.0


def scenario(**kw: object) -> DropsMidCall:
    return DropsMidCall(greeting=GREETING, reply=REPLY, continued=CONTINUED, **kw)  # type: ignore[arg-type]


class Media:
    """What media would do with the session: take every message, keep the audio in order."""

    def __init__(self, session: AgentSession) -> None:
        self.session = session
        self.outbox = Outbox()
        self.messages: list[agent_pb2.ConverseResponse] = []
        self.arrived = asyncio.Event()
        self.run: asyncio.Task[SessionEndInfo] = asyncio.create_task(session.run(self.outbox))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            self.messages.append(await self.outbox.get())
            self.arrived.set()

    @property
    def audio(self) -> bytes:
        return b"".join(m.audio.data for m in self.messages if m.WhichOneof("event") == "audio")

    def response_ids(self) -> list[int]:
        return [m.audio.response_id for m in self.messages if m.WhichOneof("event") == "audio"]

    async def wait_audio(self, n_bytes: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while len(self.audio) < n_bytes:
                self.arrived.clear()
                await self.arrived.wait()

    async def speak(self) -> None:
        """An utterance then a second of quiet, in 20 ms frames, as media sends caller audio."""
        for offset in range(0, len(VOICE), 160):
            chunk = agent_pb2.AudioChunk(data=VOICE[offset : offset + 160])
            await self.session.handle(agent_pb2.ConverseRequest(audio=chunk))

    async def stop(self) -> None:
        await self.session.aclose(common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.run, 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def media_for(
    backend: ElevenLabsBackend, start: agent_pb2.SessionStart | None = None
) -> AsyncIterator[Media]:
    media = Media(await backend.open(start or make_start()))
    try:
        yield media
    finally:
        await media.stop()


async def test_the_call_goes_on_in_a_new_conversation_told_what_the_caller_heard(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario()
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    before = resumes("resumed")
    cut = len(REPLY) // 2
    async with media_for(make_backend()) as media:
        await media.wait_audio(len(GREETING))
        await media.speak()
        await asyncio.wait_for(agent.context_arrived.wait(), 10)
        await media.wait_audio(len(GREETING) + cut)
        await media.speak()  # the next turn reaches the new conversation, which answers it
        await media.wait_audio(len(GREETING) + cut + len(CONTINUED))
        assert not media.run.done()  # the call goes on
        ids = media.response_ids()
        received = bytes(agent.conversations[1].received_audio)

    # The turn the old conversation transcribed is not replayed: before the next turn, the new one got
    # at most the quiet sent after that transcript, never the caller's words again.
    assert received.endswith(VOICE)
    replayed = received[: -len(VOICE)]
    assert not replayed or rms(replayed, FMT) < 0.02 * 32767

    assert resumes("resumed") == before + 1
    assert len(agent.conversations) == 2
    # Heard once each: the greeting (the new conversation's is dropped), the reply up to the drop, then
    # the new conversation's answer. No apology.
    assert media.audio == GREETING + REPLY[:cut] + CONTINUED
    replies = list(dict.fromkeys(ids))  # greeting, reply, the new conversation's answer
    assert len(replies) == 3
    assert replies == sorted(replies)  # the new conversation's replies number above the old ones
    context = agent.contexts[0]
    heard = agent.heard_reply_text(FMT)
    assert context.resumed
    assert 0 < len(heard) < len(agent.reply_text)
    update = context.contextual_updates[0]
    assert "Do not greet the caller" in update
    assert f"Caller: {agent.caller_text}" in update
    assert f"You: {agent.greeting_text}" in update
    assert f"You (the line dropped as you said this; the caller heard only): {heard.strip()}" in update
    assert f'The caller last heard you say: "{heard.strip()}"' in update
    assert agent.reply_text not in update  # the heard part only, not the whole text
    assert f"Caller: {agent.caller_text}" in str(context.dynamic_variables["conversation_so_far"])
    assert context.dynamic_variables["last_heard"] == heard.strip()
    assert context.user_messages == []
    assert context.first_message is None
    assert emu.open_conversations == 0


async def test_words_the_old_conversation_never_answered_are_replayed_to_the_new_one(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario(drop_before_reply=True)  # closes once it heard the caller, before any transcript
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    async with media_for(make_backend()) as media:
        await media.wait_audio(len(GREETING))
        await media.speak()
        await asyncio.wait_for(agent.context_arrived.wait(), 10)
        await media.wait_audio(len(GREETING) + len(CONTINUED))  # the new conversation answered them
        assert not media.run.done()
        first, second = agent.conversations
        await second.wait_for_audio(len(VOICE))

    assert resumes("resumed") >= 1
    assert len(agent.conversations) == 2
    assert len(first.received_audio) > 0  # the old conversation heard (some of) the words
    # The new one got the caller's audio once, in order: what the old one had heard (replayed), then
    # what arrived while the new one opened (held); nothing twice, nothing lost.
    assert bytes(second.received_audio) == VOICE
    # Transcribed and answered, with no second greeting.
    assert media.audio == GREETING + CONTINUED
    assert agent.contexts[0].contextual_updates  # after its context
    assert f"Caller: {agent.caller_text}" not in agent.contexts[0].contextual_updates[0]
    assert emu.open_conversations == 0


async def test_after_two_conversations_that_drop_again_the_caller_hears_the_apology(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario(fail_continuations=2)
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    before, dropped = resumes("failed"), failed_attempts("dropped")
    async with media_for(make_backend()) as media:
        await media.wait_audio(len(GREETING))
        await media.speak()
        end = await asyncio.wait_for(media.run, 10)
        await media.wait_audio(len(GREETING) + len(REPLY) // 2 + len(APOLOGY))
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert media.audio == GREETING + REPLY[: len(REPLY) // 2] + APOLOGY
    assert len(agent.conversations) == 3
    assert (resumes("failed"), failed_attempts("dropped")) == (before + 1, dropped + 2)
    assert emu.open_conversations == 0


async def test_two_refused_attempts_fall_back_to_the_apology(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario()
    script = emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    before, refused = resumes("failed"), failed_attempts("refused")
    async with media_for(make_backend()) as media:
        await media.wait_audio(len(GREETING))
        script.busy = "error_event"  # every new conversation is refused from now on
        await media.speak()
        end = await asyncio.wait_for(media.run, 10)
        await media.wait_audio(len(GREETING) + len(REPLY) // 2 + len(APOLOGY))
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert media.audio.endswith(APOLOGY)
    assert len(emu.rejected) == 2
    assert (resumes("failed"), failed_attempts("refused")) == (before + 1, refused + 2)


async def test_with_resume_off_the_caller_hears_the_apology(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario()
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    before = resumes("disabled")
    async with media_for(make_backend(resume=False)) as media:
        await media.wait_audio(len(GREETING))
        await media.speak()
        end = await asyncio.wait_for(media.run, 10)
        await media.wait_audio(len(GREETING) + len(REPLY) // 2 + len(APOLOGY))
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert media.audio.endswith(APOLOGY)
    assert len(agent.conversations) == 1
    assert resumes("disabled") == before + 1


async def test_a_close_a_new_conversation_would_repeat_is_not_resumed(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario(code=1008, error_type="invalid_message")
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    before = resumes("impossible")
    async with media_for(make_backend()) as media:
        await media.wait_audio(len(GREETING))
        await media.speak()
        end = await asyncio.wait_for(media.run, 10)
        await media.wait_audio(len(GREETING) + len(REPLY) // 2 + len(APOLOGY))
    assert end.reason == common_pb2.END_REASON_PROTOCOL_ERROR
    assert media.audio.endswith(APOLOGY)
    assert len(agent.conversations) == 1
    assert resumes("impossible") == before + 1


async def test_a_bridging_first_message_is_spoken_and_the_unanswered_words_answered(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    phrase = "Sorry, I lost you for a moment."
    agent = scenario(heard_fraction=0.0)  # dropped before any audio of the reply: the caller's words wait
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    async with media_for(make_backend(resume_first_message=phrase)) as media:
        await media.wait_audio(len(GREETING))
        await media.speak()
        await asyncio.wait_for(agent.context_arrived.wait(), 10)
        await media.wait_audio(2 * len(GREETING))  # the new first message (here, the emulator's greeting)
        await agent.conversations[1].wait_for_message("user_message")
    context = agent.conversations[1].context
    assert context.first_message == phrase
    assert context.user_messages == [agent.caller_text]  # answered at once, by the new conversation
    assert f"Caller: {agent.caller_text}" not in context.contextual_updates[0]  # not twice
    assert agent.reply_text not in context.contextual_updates[0]  # never heard
    assert media.audio == GREETING + GREETING


async def test_a_call_that_ends_while_resuming_leaves_no_conversation_open(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario()
    script = emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    media = Media(await make_backend().open(make_start()))
    try:
        await media.wait_audio(len(GREETING))
        script.metadata_gate = asyncio.Event()  # the next conversation never gets its metadata
        await media.speak()
        await asyncio.wait_for(agent.dropped.wait(), 10)
        await emu.wait_for_session()  # the first
        await emu.wait_for_session()  # the continuation, waiting at the gate
    finally:
        await media.stop()
    assert media.run.done()
    assert emu.open_conversations == 0


async def test_a_session_started_with_medias_resume_context_carries_the_call_on(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    """The call's agent process died; media opens a session on another one with the call so far."""
    agent = scenario()
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    start = make_start()
    agent_turn, caller_turn = common_pb2.Transcript.ROLE_AGENT, common_pb2.Transcript.ROLE_CALLER
    start.resume.turns.add(role=agent_turn, text="Hello, how can I help?", response_id=3, final=True)
    start.resume.turns.add(role=caller_turn, text="Where is my parcel?", final=True)
    start.resume.turns.add(role=agent_turn, text="It left our warehouse", response_id=7, final=True)
    start.resume.response_floor = 7
    before = resumes("continued")
    async with media_for(make_backend(), start) as media:
        await asyncio.wait_for(agent.context_arrived.wait(), 10)
        await media.speak()
        await media.wait_audio(len(CONTINUED))
        ids = media.response_ids()
    assert media.audio == CONTINUED  # the new conversation's greeting was not played
    assert min(ids) > 7
    context = agent.contexts[0]
    assert context.resumed
    update = context.contextual_updates[0]
    assert "You: Hello, how can I help?\nCaller: Where is my parcel?\nYou: It left our warehouse" in update
    assert "Caller: Where is my parcel?" in str(context.dynamic_variables["conversation_so_far"])
    assert context.dynamic_variables["last_heard"] == "It left our warehouse"
    assert resumes("continued") == before + 1


async def test_with_resume_off_medias_resume_context_is_ignored(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario()
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    start = make_start()
    start.resume.turns.add(role=common_pb2.Transcript.ROLE_CALLER, text="Where is my parcel?", final=True)
    async with media_for(make_backend(resume=False), start) as media:
        await media.wait_audio(len(GREETING))  # a new call: greeted
    assert not agent.conversations[0].context.resumed


async def test_a_transfer_asked_for_before_the_drop_is_reported_to_the_new_conversation(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    agent = scenario()
    emu.add_agent("agent_x", AgentScript(FMT, FMT, scenario=agent))
    async with media_for(make_backend()) as media:
        await media.wait_audio(len(GREETING))
        await media.speak()
        await asyncio.wait_for(agent.context_arrived.wait(), 10)
        outcome = common_pb2.TransferResult(destination="+15550123", transferred=False, detail="busy line")
        await media.session.handle(agent_pb2.ConverseRequest(transfer_result=outcome))
        update = await agent.conversations[1].wait_for_message(
            lambda m: m.get("type") == "contextual_update" and "transfer" in str(m.get("text"))
        )
    assert update["text"] == (
        "The transfer of the call to +15550123 asked for earlier failed: busy line."
        " The call was not transferred and goes on with you."
    )
