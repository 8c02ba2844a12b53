"""The call so far as a continuing conversation is told it (transcript.py): the agent's words as the
caller heard them, cut replies by their heard part, the newest turns within the size bound."""

from __future__ import annotations

from voicebridge.agent.backends.elevenlabs.transcript import ConversationLog


def _log() -> ConversationLog:
    log = ConversationLog()
    log.agent(1, "Hello, how can I help?")
    log.played(1, 1500, "Hello, how can I help?")
    log.caller("I want to change my address.")
    return log


def test_a_reply_heard_in_full_is_rendered_whole() -> None:
    log = _log()
    log.agent(2, "Sure, what is the new one?")
    log.played(2, 1200)  # no alignment: audio handed to media is heard
    log.failed()
    assert log.render() == "\n".join(
        [
            "You: Hello, how can I help?",
            "Caller: I want to change my address.",
            "You: Sure, what is the new one?",
        ]
    )
    assert log.last_heard() == "Sure, what is the new one?"
    assert log.unanswered() == ""


def test_a_reply_cut_by_the_failure_counts_with_its_heard_part_only() -> None:
    log = _log()
    log.agent(2, "Of course. I can change the address for your order, which is due on Friday.")
    log.played(2, 900, "Of course. I can ")
    log.played(2, 900, "change the")
    log.failed()
    assert log.render().splitlines()[-1] == (
        "You (the line dropped as you said this; the caller heard only): Of course. I can change the"
    )
    assert "Friday" not in log.render()  # never heard: not part of the conversation
    assert log.last_heard() == "Of course. I can change the"
    reply = log.last_agent()
    assert reply is not None
    assert reply.cut == "failure"


def test_a_reply_without_alignment_cut_by_the_failure_says_how_far_it_got() -> None:
    log = _log()
    log.played(2, 1200)  # audio of a reply whose text never came
    log.failed()
    assert log.render().splitlines()[-1] == "(The line dropped 1.2 s into a reply of yours.)"
    assert log.last_heard() == ""


def test_a_reply_whose_text_came_without_audio_was_not_heard() -> None:
    log = _log()
    log.agent(2, "Let me check that for you.")
    log.failed()
    assert "Let me check" not in log.render()
    assert log.unanswered() == "I want to change my address."
    assert log.last_heard() == "Hello, how can I help?"


def test_the_callers_last_words_are_unanswered_until_a_reply_is_heard() -> None:
    log = _log()
    assert log.unanswered() == "I want to change my address."
    assert "Caller: I want to change my address." not in log.render(drop_unanswered=True)
    log.agent(2, "Sure.")
    log.played(2, 300, "Sure.")
    assert log.unanswered() == ""


def test_a_barge_in_keeps_what_the_caller_heard() -> None:
    log = _log()
    log.agent(2, "Your order ships on Friday from our warehouse in Leeds.")
    log.played(2, 3000, "Your order ships on Friday from our warehouse in Leeds.")
    log.interrupted(2, "Your order ships", 900)
    log.caller("No, wait.")
    assert log.render().splitlines()[-2:] == [
        'You (the caller cut in; they heard only "Your order ships")',
        "Caller: No, wait.",
    ]
    log.interrupted(99, "unknown reply", 10)  # of no reply in the log: ignored
    assert len(log.turns) == 4


def test_elevenlabs_correction_replaces_the_text_with_what_was_spoken() -> None:
    log = _log()
    log.agent(2, "Your order ships on Friday from Leeds.")
    log.played(2, 800)
    log.corrected(2, "Your order ships")
    assert log.render().splitlines()[-1] == 'You (the caller cut in; they heard only "Your order ships")'


def test_only_the_newest_turns_that_fit_are_kept() -> None:
    log = ConversationLog()
    for n in range(100):
        log.caller(f"caller line number {n:03d}")
    text = log.render(max_chars=250)
    assert len(text) <= 250 + len("(100 earlier turns omitted)\n")
    lines = text.splitlines()
    assert lines[0].endswith("earlier turns omitted)")
    assert lines[-1] == "Caller: caller line number 099"
    assert int(lines[0].split()[0].strip("(")) + len(lines) - 1 == 100


def test_blank_caller_turns_are_not_kept() -> None:
    log = ConversationLog()
    log.caller("  ")
    assert log.turns == []
    assert log.render() == ""


def test_turns_heard_elsewhere_count_as_heard() -> None:
    log = ConversationLog()
    log.heard("agent", "Hello.", 3)
    log.heard("caller", "Hi, my parcel?")
    log.heard("agent", "  ", 4)  # nothing heard: not a turn
    assert log.render() == "You: Hello.\nCaller: Hi, my parcel?"
    assert log.last_heard() == "Hello."
    assert log.unanswered() == "Hi, my parcel?"
