"""A streamed reply under a chat network's rate limit, on a fake clock: edits spaced out after
the network holds one back, the final edit never stuck behind a held one, nothing lost."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from jupybot.commands import Reply, reply_to_text
from jupybot.commands.pacing import EditPacer
from jupybot.commands.stdin import InputRouter
from jupybot.commands.streaming import ExecutionReporter, StreamSettings
from jupybot.kernels import ExecutionResult, Stream
from jupybot.rendering import RenderOptions, render_outputs
from tests.commands.fakes import FakeConversation


def test_a_burst_of_quick_edits_then_the_pace_a_homeserver_sustains() -> None:
    pacer = EditPacer(1.0)
    spacings = []
    for _ in range(7):
        pacer.landed(0.05)
        spacings.append(pacer.spacing)
    assert spacings == [1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0]


def test_a_held_back_send_doubles_its_time_then_prompt_ones_relax_by_a_tenth() -> None:
    pacer = EditPacer(1.0, sustained=1.0)
    pacer.landed(0.05)
    assert pacer.spacing == 1.0
    pacer.landed(5.0)  # a 429 waited out for 5 s
    assert pacer.spacing == 10.0
    pacer.landed(0.05)
    assert pacer.spacing == pytest.approx(9.0)
    pacer.landed(6.0)
    assert pacer.spacing == pytest.approx(18.0)
    for _ in range(100):
        pacer.landed(0.05)
    assert pacer.spacing == 1.0
    pacer.landed(50.0)
    assert pacer.spacing == 60.0  # an edit a minute at the slowest


@dataclass
class LimitedConversation(FakeConversation):
    """Edits land when the test's plan says: C{holds[n]} seconds after the n-th edit is made
    (a rate limit waited out), at once otherwise. Records when each edit was made."""

    clock: Clock = field(default_factory=Clock)
    holds: dict[int, float] = field(default_factory=dict)
    made_at: list[float] = field(default_factory=list)
    landed: list[str] = field(default_factory=list)

    def edit(self, message_id: str, reply: Reply) -> Deferred[None]:
        number = len(self.edits)
        super().edit(message_id, reply)
        self.made_at.append(self.clock.seconds())
        d: Deferred[None] = Deferred()
        text = reply_to_text(reply)
        self.clock.callLater(self.holds.get(number, 0.0), self._land, d, text)
        return d

    def _land(self, d: Deferred[None], text: str) -> None:
        self.landed.append(text)
        d.callback(None)


def reporter_on(conversation: LimitedConversation) -> ExecutionReporter:
    return ExecutionReporter(
        conversation=conversation,
        command_id="command",
        sender="@alice:example.org",
        clock=conversation.clock,
        settings=StreamSettings(
            render_outputs, RenderOptions(max_text_chars=100_000), InputRouter()
        ),
    )


def stream(reporter: ExecutionReporter, clock: Clock, lines: range, every: float) -> None:
    for i in lines:
        reporter.on_output(Stream("stdout", f"line {i}\n"))
        clock.advance(every)


def test_edits_are_spaced_out_after_the_network_holds_one_back() -> None:
    conversation = LimitedConversation(holds={3: 5.0})
    clock = conversation.clock
    reporter = reporter_on(conversation)
    reporter.started()
    stream(reporter, clock, range(400), every=0.25)
    made = conversation.made_at
    # An edit a second until the fourth is held 5 s; then the next waits twice that, from
    # when the held one was made, and the spacing relaxes by a tenth per prompt edit (8.1 s,
    # 7.29 s...: the clock moves in quarter seconds here) down to the sustained 5 s.
    assert made[:4] == [2.0, 3.0, 4.0, 5.0]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(made[3:])]
    assert gaps[:7] == [10.0, 9.0, 8.25, 7.5, 6.75, 6.0, 5.5]
    assert set(gaps[7:]) == {5.0}  # then the sustained pace


def test_the_final_edit_overtakes_an_edit_held_back_and_shows_everything() -> None:
    conversation = LimitedConversation(holds={2: 30.0})
    clock = conversation.clock
    reporter = reporter_on(conversation)
    reporter.started()
    stream(reporter, clock, range(16), every=0.25)  # edits made at 2, 3 and 4 s (held)
    assert conversation.made_at == [2.0, 3.0, 4.0]
    finished = reporter.finish(ExecutionResult("ok", 1, 4.0))
    clock.advance(1.0)  # the final edit waits an interval for the held one, then goes
    assert conversation.made_at == [2.0, 3.0, 4.0, 5.0]
    final = reply_to_text(conversation.edits[-1][1])
    assert "\n".join(f"line {i}" for i in range(16)) in final
    assert "✅ done" in final and "running" not in final
    assert finished.called
    assert conversation.reactions == [("command", "✅")]


def test_a_prompt_edit_in_flight_is_waited_for_before_the_final_one() -> None:
    conversation = LimitedConversation(holds={1: 0.5})
    clock = conversation.clock
    reporter = reporter_on(conversation)
    reporter.started()
    stream(reporter, clock, range(12), every=0.25)  # edits at 2 s and 3 s (lands at 3.5 s)
    reporter.finish(ExecutionResult("ok", 1, 3.0))
    assert len(conversation.edits) == 2
    clock.advance(0.5)
    assert len(conversation.edits) == 3
    assert conversation.made_at[-1] == 3.5
    assert "✅ done" in conversation.landed[-1]
