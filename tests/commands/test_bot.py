"""The chat bot end to end at its seams: a fake conversation and fake kernels, a fake clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from jupybot.commands import (
    AccessPolicy,
    Addressing,
    ChatCommands,
    ChatLimits,
    ChatNetwork,
    ChatRules,
    ChatStores,
    IncomingMessage,
    RunningReplies,
    reply_to_text,
)
from jupybot.commands.safety import WORD_JOINER
from jupybot.kernels import (
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    ExecutionResult,
    GatewayUnavailable,
    Stream,
)
from jupybot.rendering import RenderOptions

from .fakes import FakeConversation, FakeKernels, simple_render

# Most tests send more commands at once than a person may: the rate has tests of its own.
NO_RATE_LIMIT = ChatLimits(commands_per_minute=0)
ALICE = "@alice:example.org"
MALLORY = "@mallory:evil.org"


def make_bot(
    clock: Clock | None = None,
    limits: ChatLimits = NO_RATE_LIMIT,
    running_replies: RunningReplies | None = None,
) -> tuple[ChatCommands, FakeKernels, Clock]:
    clock = clock or Clock()
    kernels = FakeKernels()
    network = ChatNetwork(
        AccessPolicy.build(["*:example.org"], ["@root:example.org"], ["stop"]),
        Addressing(prefixes=("!jupybot",), mentions=("jupybot",)),
        RenderOptions(max_text_chars=50),
        simple_render,
    )
    stores = ChatStores(running_replies) if running_replies is not None else None
    bot = ChatCommands(kernels, network, clock, rules=ChatRules(limits), stores=stores)
    return bot, kernels, clock


_ids = iter(range(1, 1_000_000))


def say(
    bot: ChatCommands, room: FakeConversation, text: str, sender: str = ALICE
) -> Deferred[None]:
    message = IncomingMessage(f"$cmd{next(_ids)}", sender, text, room)
    return bot.handle(message)


def test_help_lists_commands_with_examples() -> None:
    bot, _, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot help")
    text = room.texts()[-1]
    assert "!jupybot start [kernelspec] [as NAME]" in text
    assert "!jupybot run 6 * 7" in text
    assert "\n!jupybot stop [NAME]: stop a kernel (admins only)\n" in text
    direct = FakeConversation(is_direct=True)
    say(bot, direct, "help")
    assert "\nrun CODE:" in direct.texts()[-1]


def test_unknown_command_gets_usage_not_traceback() -> None:
    bot, _, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot frobnicate now")
    assert room.texts() == ["Unknown command 'frobnicate'. Try '!jupybot help' for the list."]
    assert room.sent[0][2] is not None  # a reply to the command


def test_refusals_are_short_and_rate_limited() -> None:
    bot, kernels, clock = make_bot()
    room = FakeConversation()
    for _ in range(3):
        say(bot, room, "!jupybot run 1", sender=MALLORY)
    say(bot, room, "!jupybot nonsense", sender=MALLORY)
    assert room.texts() == [f"Sorry, {MALLORY} is not allowed to use this bot."]
    assert kernels.executions == []
    clock.advance(61)
    say(bot, room, "!jupybot run 1", sender=MALLORY)
    assert len(room.texts()) == 2
    say(bot, room, "!jupybot stop")
    assert room.texts()[-1] == "Sorry, only admins may use 'stop' in a shared room."
    say(bot, room, "!jupybot stop", sender="@root:example.org")
    assert kernels.calls == [("stop", "test:room", None)]


def test_kernel_commands() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot kernels")
    assert "No kernels here yet" in room.texts()[-1]
    say(bot, room, "!jupybot start python3 as calc")
    assert room.texts()[-1] == (
        "▶ Started kernel 'calc' (python3); it is now the current kernel here."
    )
    say(bot, room, "!jupybot start")
    say(bot, room, "!jupybot use calc")
    assert room.texts()[-1] == "Now using kernel 'calc' (python3)."
    say(bot, room, "!jupybot kernels")
    assert room.texts()[-1] == "Kernels here (* is current):\n * calc (python3)\n   k2 (python3)"
    say(bot, room, "!jupybot use nope")
    assert room.texts()[-1] == "❌ There is no kernel named 'nope' here."
    say(bot, room, "!jupybot specs")
    assert "python3: Python 3 (ipykernel) (python)" in room.texts()[-1]
    say(bot, room, "!jupybot interrupt calc")
    assert kernels.calls[-1] == ("interrupt", "test:room", "calc")
    other = FakeConversation(key="test:other")
    say(bot, other, "!jupybot kernels")
    assert "No kernels here yet" in other.texts()[-1]


def test_quick_run_is_one_reply_with_status() -> None:
    bot, kernels, clock = make_bot()
    room = FakeConversation()
    done = say(bot, room, "!jupybot run 1+1")
    execution = kernels.executions[0]
    assert execution.code == "1+1"
    clock.advance(0.2)
    execution.listener.on_output(ExecuteResult({"text/plain": "2"}, {}, 1))
    clock.advance(0.2)
    assert room.sent == []
    execution.result.callback(ExecutionResult("ok", 1, 0.012))
    assert done.called
    assert room.texts() == ["```\n2\n```\n\n✅ done · [1] · 12 ms"]
    assert room.edits == []
    assert room.reactions == []


def test_long_run_streams_edits_at_most_once_a_second() -> None:
    bot, kernels, clock = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run slow()")
    execution = kernels.executions[0]
    clock.advance(1.0)
    assert room.texts() == ["⏳ running…"]
    message_id = room.sent[0][0]
    for i in range(10):
        execution.listener.on_output(Stream("stdout", f"{i}\n"))
        clock.advance(0.25)
    # Output every 0.25 s from 1 s to 3.25 s: one edit a second, each with all that arrived
    # by then (at 2 s, 0 to 3; at 3 s, 0 to 7); 8 and 9 wait for the next second or the end.
    assert [(edited, reply_to_text(reply)) for edited, reply in room.edits] == [
        (message_id, "```\n0\n1\n2\n3\n```\n\n⏳ running…"),
        (message_id, "```\n0\n1\n2\n3\n4\n5\n6\n7\n```\n\n⏳ running…"),
    ]
    execution.result.callback(ExecutionResult("ok", 3, 2.6))
    assert len(room.edits) == 3
    assert room.last_text(message_id) == (
        "```\n0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n```\n\n✅ done · [3] · 2.6 s"
    )
    assert len(room.sent) == 1
    assert room.reactions == [(room.sent[0][2], "✅")]


def test_errors_show_the_exception_line_first_without_ansi() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run 1/0")
    execution = kernels.executions[0]
    execution.listener.on_output(
        ErrorOutput(
            "ZeroDivisionError",
            "division by zero",
            (
                "\x1b[31m---------\x1b[39m",
                "\x1b[31mZeroDivisionError\x1b[39m Traceback",
                "\x1b[32m----> 1\x1b[39m 1/0",
            ),
        )
    )
    execution.result.callback(ExecutionResult("error", 2, 0.01))
    text = room.texts()[0]
    assert text.startswith("ZeroDivisionError: division by zero\n\n```\n---------\n")
    assert "\x1b" not in text
    assert text.endswith("❌ error · [2] · 10 ms")


def test_images_and_long_output_follow_as_uploads() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run plot()")
    execution = kernels.executions[0]
    execution.listener.on_output(Stream("stdout", "x" * 80))
    execution.listener.on_output(DisplayData({"image/png": b"\x89PNG"}, {}))
    execution.result.callback(ExecutionResult("ok", 4, 0.5))
    assert "(output cut: the whole output follows as a file)" in room.texts()[0]
    assert [i.data for i in room.images] == [b"\x89PNG"]
    assert [f.data for f in room.files] == [b"x" * 80]


def test_kernel_output_is_shown_as_printed() -> None:
    """No word joiner in output: the adapters' no-pings switch (Matrix m.mentions, Discord
    allowed_mentions) stops pings, and what people copy from a reply must be what was printed."""
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run print('@room')")
    execution = kernels.executions[0]
    execution.listener.on_output(Stream("stdout", '@room {"user": "@bot:localhost"} <@123>\n'))
    execution.listener.on_output(ErrorOutput("ValueError", "@everyone @alice:example.org", ()))
    execution.result.callback(ExecutionResult("error", 1, 0.1, "@room"))
    assert room.texts() == [
        '```\n@room {"user": "@bot:localhost"} <@123>\n```\n\n'
        "ValueError: @everyone @alice:example.org\n\n"
        "❌ error · [1] · 100 ms · @room"
    ]
    assert WORD_JOINER not in room.texts()[0]


def test_input_is_the_next_message_from_the_same_user() -> None:
    bot, kernels, _clock = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run input('Name? ')")
    execution = kernels.executions[0]
    answer = execution.listener.on_input_request("Name? ", False)
    assert room.texts()[-1] == (
        f"⌨ The code asks {ALICE} for input:\n\n```\nName?\n```\n\n"
        "Your next message here is the answer."
    )
    say(bot, room, "not mine", sender="@bob:example.org")
    assert not answer.called
    say(bot, room, "Alice")
    assert answer.result == "Alice"
    # The answer was not taken as a command, and later messages are commands again.
    assert not room.texts()[-1].startswith("Unknown")
    execution.result.callback(ExecutionResult("ok", 1, 3.0))
    say(bot, room, "Alice again")
    assert len(kernels.executions) == 1


def test_password_prompts_are_asked_in_a_direct_chat() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run getpass()")
    execution = kernels.executions[0]
    answer = execution.listener.on_input_request("Password:", True)
    assert "asked in a direct message" in room.texts()[-1]
    direct = room.directs[ALICE]
    assert "Password:" in direct.texts()[-1]
    say(bot, room, "secret in the room")
    assert not answer.called
    say(bot, direct, "s3cret")
    assert answer.result == "s3cret"


def test_execution_end_withdraws_an_unanswered_prompt() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run input()")
    execution = kernels.executions[0]
    answer = execution.listener.on_input_request("", False)
    answer.addErrback(lambda f: None)
    execution.result.callback(ExecutionResult("aborted", None, 5.0, "Interrupted."))
    assert not bot.inputs.is_waiting(room.key, ALICE)
    assert room.last_text(room.sent[0][0]).endswith("⏹ aborted · 5.0 s · Interrupted.")


def test_kernel_errors_are_reported_plainly() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run 1")
    kernels.executions[0].result.errback(GatewayUnavailable("The kernel gateway is down."))
    assert room.texts() == ["❌ The kernel gateway is down."]


def test_stop_cancels_running_executions_and_says_so() -> None:
    bot, _kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run while True: pass")
    assert bot.running == 1
    stopped = bot.stop()
    assert stopped.called and bot.running == 0
    assert room.texts() == ["❌ Cancelled: the bot is stopping."]
