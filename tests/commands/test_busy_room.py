"""A busy room: order, one run per person, a rate, re-runs, interrupts, crashes and restarts."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from jupybot.commands import (
    ChatLimits,
    Conversation,
    IncomingMessage,
    IncomingReaction,
    Reply,
    RunningReplies,
)
from jupybot.commands.bot import NOT_STARTED_LINE, STOPPING_NOTICE
from jupybot.commands.inflight import NOT_RUN_LINE, RESTARTED_LINE, as_recovered
from jupybot.kernels import ErrorOutput, ExecutionResult, Stream

from .fakes import FakeConversation
from .test_bot import ALICE, make_bot, say

BOB = "@bob:example.org"


def test_a_rooms_runs_reach_the_kernel_in_the_order_they_were_sent() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run a = 1")
    say(bot, room, "!jupybot use k1", sender=BOB)
    say(bot, room, "!jupybot run print(a)", sender=BOB)
    # The second run waits for the first (a kernel runs one cell at a time anyway), and says so.
    assert [e.code for e in kernels.executions] == ["a = 1"]
    assert [key for _, key in room.reactions] == ["⏳"]
    kernels.executions[0].result.callback(ExecutionResult("ok", 1, 0.1))
    assert [e.code for e in kernels.executions] == ["a = 1", "print(a)"]


def test_interrupt_restart_and_stop_do_not_wait_their_turn() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run while True: pass")
    say(bot, room, "!jupybot run 1")
    for word in ("interrupt", "restart"):
        say(bot, room, f"!jupybot {word}")
    say(bot, room, "!jupybot stop", sender="@root:example.org")
    assert [call[0] for call in kernels.calls] == ["interrupt", "restart", "stop"]


def test_a_person_has_one_run_going_and_two_waiting_then_a_clear_refusal() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    for n in range(4):
        say(bot, room, f"!jupybot run {n}")
    assert room.texts() == [
        f"⏳ {ALICE}, you have a run going here and 2 more waiting: that is the most I keep. "
        "Send this again when one has ended (or 'interrupt' the one running)."
    ]
    say(bot, room, "!jupybot run 9", sender=BOB)  # others are not refused for Alice's queue
    for done in range(4):
        kernels.executions[done].result.callback(ExecutionResult("ok", 1, 0.1))
    assert [e.code for e in kernels.executions] == ["0", "1", "2", "9"]
    say(bot, room, "!jupybot run 4")
    assert kernels.executions[-1].code == "4"


def test_each_person_has_a_command_rate() -> None:
    clock = Clock()
    bot, _, _ = make_bot(clock, ChatLimits(commands_per_minute=6, command_burst=3))
    room = FakeConversation()
    for _ in range(4):
        say(bot, room, "!jupybot kernels")
    assert room.texts()[-1] == (
        f"🐢 Slow down, {ALICE}: that is more commands than I take from one person in a short "
        "while. Try again in 10 s."
    )
    say(bot, room, "!jupybot kernels", sender=BOB)
    assert room.texts()[-1].startswith("No kernels here yet")
    clock.advance(10)
    say(bot, room, "!jupybot kernels")
    assert room.texts()[-1].startswith("No kernels here yet")
    assert len(room.texts()) == 6


def test_a_command_over_the_rate_always_gets_an_answer() -> None:
    bot, _, _ = make_bot(Clock(), ChatLimits(commands_per_minute=6, command_burst=1))
    room = FakeConversation()
    for n in range(4):
        say(bot, room, f"!jupybot kernels {n}")
    # One "slow down" line a minute at most, and a reaction on every other refused command.
    slow = [text for text in room.texts() if text.startswith("🐢 Slow down")]
    assert len(slow) == 1
    assert [key for _, key in room.reactions] == ["🐢", "🐢"]


def test_editing_a_run_runs_it_again_in_the_same_reply() -> None:
    clock = Clock()
    bot, kernels, _ = make_bot(clock)
    room = FakeConversation()
    bot.handle(IncomingMessage("$cmd", ALICE, "!jupybot run 1 +", room))
    kernels.executions[0].listener.on_output(ErrorOutput("SyntaxError", "incomplete input"))
    kernels.executions[0].result.callback(ExecutionResult("error", 1, 0.1))
    reply_id = room.sent[0][0]
    # Bob may not edit Alice's command; an edit that is no run does nothing.
    bot.handle(IncomingMessage("$e1", BOB, "!jupybot run 2", room, edit_of="$cmd"))
    bot.handle(IncomingMessage("$e2", ALICE, "!jupybot kernels", room, edit_of="$cmd"))
    # Nor does an edit that leaves the code as it was (Discord adding a link preview).
    bot.handle(IncomingMessage("$e2b", ALICE, "!jupybot run  `1 +`", room, edit_of="$cmd"))
    assert len(kernels.executions) == 1
    bot.handle(IncomingMessage("$e3", ALICE, "!jupybot run 1 + 1", room, edit_of="$cmd"))
    assert kernels.executions[1].code == "1 + 1"
    kernels.executions[1].listener.on_output(Stream("stdout", "2\n"))
    kernels.executions[1].result.callback(ExecutionResult("ok", 2, 0.1))
    assert len(room.sent) == 1
    assert room.last_text(reply_id) == "```\n2\n```\n\n✅ done · [2] · 100 ms"
    # Past the window, an edit is only an edit.
    clock.advance(601)
    bot.handle(IncomingMessage("$e4", ALICE, "!jupybot run 3", room, edit_of="$cmd"))
    assert len(kernels.executions) == 2


def test_a_repeat_reaction_on_the_reply_runs_the_code_again() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    bot.handle(IncomingMessage("$cmd", ALICE, "!jupybot run roll()", room))
    kernels.executions[0].result.callback(ExecutionResult("ok", 1, 0.1))
    reply_id = room.sent[0][0]
    bot.handle_reaction(IncomingReaction(reply_id, BOB, "👍", room))
    bot.handle_reaction(IncomingReaction("$cmd", BOB, "🔁", room))  # on the command: no
    bot.handle_reaction(IncomingReaction(reply_id, "@eve:evil.org", "🔁", room))  # not allowed
    assert len(kernels.executions) == 1
    bot.handle_reaction(IncomingReaction(reply_id, BOB, "🔁", room))
    assert kernels.executions[1].code == "roll()"
    kernels.executions[1].result.callback(ExecutionResult("ok", 2, 0.1))
    assert len(room.sent) == 1
    assert room.last_text(reply_id) == "✅ done · [2] · 100 ms"


def test_an_interrupted_run_ends_aborted_not_as_an_error() -> None:
    bot, kernels, clock = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot run import time; time.sleep(60)")
    execution = kernels.executions[0]
    execution.listener.on_output(Stream("stdout", "sleeping\n"))
    clock.advance(2)
    say(bot, room, "!jupybot interrupt")
    execution.listener.on_output(
        ErrorOutput("KeyboardInterrupt", "", ("Traceback", "KeyboardInterrupt"))
    )
    execution.result.callback(ExecutionResult("error", 1, 2.5))
    assert room.last_text(room.sent[0][0]) == (
        "```\nsleeping\n```\n\n⏹ aborted · [1] · 2.5 s · interrupted"
    )
    # A KeyboardInterrupt nobody asked for is the code's own error.
    say(bot, room, "!jupybot run raise KeyboardInterrupt")
    kernels.executions[1].listener.on_output(ErrorOutput("KeyboardInterrupt", ""))
    kernels.executions[1].result.callback(ExecutionResult("error", 2, 0.1))
    assert room.texts()[-1] == "KeyboardInterrupt\n\n❌ error · [2] · 100 ms"


def test_a_reply_left_running_by_a_crash_is_told_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    clock = Clock()
    bot, kernels, _ = make_bot(clock, running_replies=RunningReplies(path))
    room = FakeConversation()
    say(bot, room, "!jupybot run slow()")
    kernels.executions[0].listener.on_output(Stream("stdout", "half way\n"))
    clock.advance(1)
    reply_id = room.sent[0][0]
    assert room.last_text(reply_id).endswith("⏳ running…")
    # SIGKILL here: nothing more happens in this process. The next one reads the file.
    after, _, _ = make_bot(running_replies=RunningReplies(path))
    found: list[str] = []

    def find(key: str) -> Deferred[Conversation | None]:
        found.append(key)
        return succeed(room)

    assert after.recover(find).called
    assert found == [room.key]
    assert room.last_text(reply_id) == f"```\nhalf way\n```\n\n{RESTARTED_LINE}"
    assert RunningReplies(path).left_running() == []


def test_a_run_left_waiting_by_a_crash_is_answered_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    bot, kernels, _ = make_bot(running_replies=RunningReplies(path))
    room = FakeConversation()
    say(bot, room, "!jupybot run slow()")
    waiting = say(bot, room, "!jupybot run print('after')", sender=BOB)
    assert not waiting.called
    [(command_id, _)] = room.reactions
    # SIGKILL here. The next process answers the waiting command; the running one is edited.
    after, _, _ = make_bot(running_replies=RunningReplies(path))
    assert [q.command_id for q in RunningReplies(path).left_queued()] == [command_id]
    assert after.recover(lambda key: succeed(room)).called
    [reply] = [r for _, r, to in room.sent if to == command_id]
    assert reply == Reply.text(NOT_RUN_LINE)
    assert RunningReplies(path).left_queued() == []
    assert [e.code for e in kernels.executions] == ["slow()"]


def test_a_run_whose_turn_came_is_not_answered_as_left_waiting(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    bot, kernels, _ = make_bot(running_replies=RunningReplies(path))
    room = FakeConversation()
    say(bot, room, "!jupybot run 1")
    say(bot, room, "!jupybot run 2", sender=BOB)
    kernels.executions[0].result.callback(ExecutionResult("ok", 1, 0.1))
    kernels.executions[1].result.callback(ExecutionResult("ok", 2, 0.1))
    assert RunningReplies(path).left_queued() == []


def test_a_stop_answers_the_runs_waiting_their_turn(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    bot, kernels, _ = make_bot(running_replies=RunningReplies(path))
    room = FakeConversation()
    say(bot, room, "!jupybot run slow()")
    say(bot, room, "!jupybot run 2", sender=BOB)
    say(bot, room, "!jupybot run 3", sender=BOB)
    waiting = [command_id for command_id, _ in room.reactions]
    assert bot.stop().called
    told = [to for _, reply, to in room.sent if reply == Reply.text(NOT_STARTED_LINE)]
    assert set(told) == set(waiting) and len(told) == len(waiting)
    assert [e.code for e in kernels.executions] == ["slow()"]  # it never ran
    assert RunningReplies(path).left_queued() == []


def test_a_run_that_ends_leaves_nothing_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    bot, kernels, clock = make_bot(running_replies=RunningReplies(path))
    room = FakeConversation()
    say(bot, room, "!jupybot run slow()")
    clock.advance(1)
    assert len(RunningReplies(path).left_running()) == 1
    kernels.executions[0].result.callback(ExecutionResult("ok", 1, 1.5))
    assert RunningReplies(path).left_running() == []


def test_stopping_tells_rooms_with_kernels_that_their_variables_go() -> None:
    bot, _, _ = make_bot()
    busy, idle = FakeConversation(key="test:busy"), FakeConversation(key="test:idle")
    say(bot, busy, "!jupybot start")
    say(bot, idle, "!jupybot help")
    stopped = bot.stop()
    assert stopped.called
    assert busy.texts()[-1] == STOPPING_NOTICE
    assert STOPPING_NOTICE not in idle.texts()


def test_a_run_still_waiting_for_its_kernel_counts_as_running(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    bot, kernels, clock = make_bot(running_replies=RunningReplies(path))
    room = FakeConversation()
    say(bot, room, "!jupybot run 1")
    kernels.executions[0].listener.on_kernel_wait(2)  # type: ignore[attr-defined]
    clock.advance(1)
    [left] = RunningReplies(path).left_running()
    assert as_recovered(left.shown) == Reply.text(RESTARTED_LINE)
