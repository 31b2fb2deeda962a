"""A run that waits for its kernel to start says where it stands in the chat, not nothing."""

from __future__ import annotations

from twisted.internet.task import Clock

from jupybot.commands.stdin import InputRouter
from jupybot.commands.streaming import ExecutionReporter
from jupybot.kernels import ExecutionResult, RenderOptions, render_outputs
from jupybot.kernels.starts import StartWatcher
from tests.commands.fakes import FakeConversation


def test_the_reply_says_how_many_kernel_starts_are_ahead_then_running() -> None:
    clock = Clock()
    clock.advance(1000)  # a real clock's time is far from 0
    conversation = FakeConversation()
    reporter = ExecutionReporter(
        conversation=conversation,
        command_id="command",
        sender="@alice:example.org",
        clock=clock,
        render=render_outputs,
        options=RenderOptions(),
        inputs=InputRouter(),
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
