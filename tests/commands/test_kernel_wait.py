"""A run that waits for its kernel to start says where it stands in the chat, not nothing."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from jupybot.commands import (
    AccessPolicy,
    Addressing,
    ChatCommands,
    ChatLimits,
    ChatNetwork,
    ChatRules,
    IncomingMessage,
)
from jupybot.commands.stdin import InputRouter
from jupybot.commands.streaming import ExecutionReporter, StreamSettings
from jupybot.kernels import ExecutionResult
from jupybot.kernels.starts import StartWatcher
from jupybot.rendering import RenderOptions, render_outputs
from tests.commands.fakes import FakeConversation, simple_render
from tests.kernels.fake_gateway import FakeGateway


def test_the_reply_says_how_many_kernel_starts_are_ahead_then_running() -> None:
    clock = Clock()
    clock.advance(1000)  # a real clock's time is far from 0
    conversation = FakeConversation()
    reporter = ExecutionReporter(
        conversation=conversation,
        command_id="command",
        sender="@alice:example.org",
        clock=clock,
        settings=StreamSettings(render_outputs, RenderOptions(), InputRouter()),
    )
    assert isinstance(reporter, StartWatcher)  # what the kernel manager looks for
    # The manager tells a queued run its place inside execute(), before the command layer
    # calls started(): nothing is shown before the interval, as for any run.
    reporter.on_kernel_wait(3)
    reporter.started()
    clock.advance(0.5)
    assert conversation.sent == []
    clock.advance(0.5)
    assert conversation.last_text().endswith("⏳ starting a kernel… (3 ahead)")
    reporter.on_kernel_wait(0)
    clock.advance(1)
    assert conversation.last_text().endswith("⏳ starting a kernel…")
    reporter.on_kernel_wait(None)
    clock.advance(1)
    assert conversation.last_text().endswith("⏳ running…")
    reporter.finish(ExecutionResult("ok", 1, 12.0))
    assert conversation.last_text().endswith("✅ done · [1] · 12.0 s")


def test_rooms_waiting_for_kernel_starts_are_told_their_place_in_the_chat() -> None:
    """The chat bot over the real kernel manager (on a fake gateway): with the one start slot
    taken, two new rooms' runs wait in line and their replies say where they stand."""
    reactor = MemoryReactorClock()
    reactor.advance(1000)
    gateway = FakeGateway(reactor)
    manager = gateway.manager(start_concurrency=1)
    network = ChatNetwork(
        AccessPolicy.build(["*:example.org"], [], []),
        Addressing(prefixes=("!jupybot",), mentions=()),
        RenderOptions(),
        simple_render,
    )
    rules = ChatRules(ChatLimits(commands_per_minute=0))
    bot = ChatCommands(manager, network, reactor, rules=rules)
    manager.starts.wait_turn()  # someone else's start holds the only slot
    rooms = [FakeConversation(key=f"test:room-{n}") for n in range(2)]
    for n, room in enumerate(rooms):
        bot.handle(IncomingMessage(f"$cmd{n}", "@alice:example.org", "!jupybot run 1", room))
    reactor.advance(1)
    assert [room.last_text() for room in rooms] == [
        "⏳ starting a kernel…",
        "⏳ starting a kernel… (1 ahead)",
    ]
    manager.starts.done()
    gateway.answer_all()
    reactor.advance(1)
    assert all("✅ done" in room.last_text() for room in rooms)
    assert len(gateway.kernels) == 2
