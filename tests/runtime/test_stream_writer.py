"""PriorityStreamWriter: control before audio, bounded audio, and the direct path to a shared stream."""

from __future__ import annotations

import asyncio

from voicebridge.runtime.stream_writer import PriorityStreamWriter


class FakeCall:
    """A bidi call whose writes can be held, and that may or may not take a message without waiting."""

    def __init__(self, nowait: bool) -> None:
        self.written: list[tuple[str, str]] = []  # (message, "task" or "direct")
        self.release = asyncio.Event()
        self.release.set()
        self.writing = asyncio.Event()
        self.accept_nowait = True
        if not nowait:
            self.write_nowait = None  # a per-call grpc.aio stream has no such method

    async def write(self, message: str) -> None:
        self.writing.set()
        await self.release.wait()
        self.written.append((message, "task"))

    def write_nowait(self, message: str) -> bool:
        if not self.accept_nowait:
            return False
        self.written.append((message, "direct"))
        return True

    async def done_writing(self) -> None:
        self.written.append(("<half-close>", "task"))


async def test_with_nothing_queued_messages_go_straight_to_a_shared_stream():
    call = FakeCall(nowait=True)
    writer = PriorityStreamWriter(call, max_audio=4)
    writer.audio("a1")
    writer.control("c1")
    assert call.written == [("a1", "direct"), ("c1", "direct")]  # before any task ran
    await writer.close("end")
    assert call.written[-2:] == [("end", "task"), ("<half-close>", "task")]


async def test_a_message_never_overtakes_one_the_task_is_still_writing():
    call = FakeCall(nowait=True)
    sent = []
    writer = PriorityStreamWriter(call, max_audio=4, on_sent=lambda: sent.append(1))
    call.accept_nowait = False  # the shared stream is full: the task takes over
    writer.audio("a1")
    call.release.clear()
    await call.writing.wait()  # the task is inside write("a1")
    call.accept_nowait = True
    writer.audio("a2")  # must queue behind a1, not jump ahead through write_nowait
    writer.control("c1")
    call.release.set()
    await writer.close()
    assert [m for m, _ in call.written] == ["a1", "c1", "a2", "<half-close>"]
    assert len(sent) == 3


async def test_without_write_nowait_every_message_goes_through_the_task_control_first():
    call = FakeCall(nowait=False)
    writer = PriorityStreamWriter(call, max_audio=2)
    for message in ("a1", "a2", "a3"):
        writer.audio(message)  # a1 is dropped: the audio queue holds two
    writer.control("c1")
    await writer.close()
    assert call.written == [("c1", "task"), ("a2", "task"), ("a3", "task"), ("<half-close>", "task")]
