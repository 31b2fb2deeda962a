"""The service tree: statuses, start order, reverse sequential bounded stop."""

from __future__ import annotations

import asyncio

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from jupybot.service import AsyncioPart, JupybotService, Part


class RecordingPart(Part):
    def __init__(self, name: str, log: list[str], stop_with: Deferred[None] | None = None) -> None:
        super().__init__(name)
        self.events = log
        self.start_with: Deferred[None] = succeed(None)
        self.stop_with = stop_with

    def start_part(self) -> Deferred[None]:
        self.events.append(f"start {self.name}")
        return self.start_with

    def stop_part(self) -> Deferred[None] | None:
        self.events.append(f"stop {self.name}")
        return self.stop_with


def test_parts_start_in_order_and_stop_in_reverse_one_after_another() -> None:
    events: list[str] = []
    top = JupybotService(Clock(), stop_timeout=5)
    slow_stop: Deferred[None] = Deferred()
    top.add_part(RecordingPart("gateway", events))
    top.add_part(RecordingPart("bot", events, stop_with=slow_stop))
    top.startService()
    assert events == ["start gateway", "start bot"]

    stopped = top.stopService()
    # The gateway waits until the bot using it has stopped.
    assert events[2:] == ["stop bot"]
    slow_stop.callback(None)
    assert events[2:] == ["stop bot", "stop gateway"]
    assert stopped.called


def test_a_part_that_hangs_on_stop_is_given_up_after_the_timeout() -> None:
    events: list[str] = []
    clock = Clock()
    top = JupybotService(clock, stop_timeout=5)
    top.add_part(RecordingPart("first", events))
    top.add_part(RecordingPart("stuck", events, stop_with=Deferred()))
    top.startService()
    stopped = top.stopService()
    assert not stopped.called
    clock.advance(5)
    assert events[-1] == "stop first"
    assert stopped.called


def test_a_part_whose_stop_needs_longer_than_the_timeout_is_given_that_long() -> None:
    """The terminal's SIGHUP, SIGTERM, SIGKILL sequence must reach its SIGKILL."""
    events: list[str] = []
    clock = Clock()
    top = JupybotService(clock, stop_timeout=1)
    terminal = RecordingPart("terminal", events, stop_with=Deferred())
    terminal.stop_needs = 5
    top.add_part(RecordingPart("first", events))
    top.add_part(terminal)
    top.startService()
    stopped = top.stopService()
    clock.advance(4.9)
    assert events[-1] == "stop terminal"
    terminal.stop_with.callback(None)  # type: ignore[union-attr]
    assert events[-1] == "stop first"
    assert stopped.called


def test_statuses_show_running_starting_failed_and_disabled() -> None:
    top = JupybotService(Clock(), stop_timeout=5)
    running = RecordingPart("web", [])
    starting = RecordingPart("kernels", [])
    starting.start_with = Deferred()
    failing = RecordingPart("matrix", [])
    failing.start_with = Deferred()
    for part in (starting, failing, running):
        top.add_part(part)
    top.add_disabled("discord", "no discord.token")
    top.startService()
    failing.start_with.errback(ConnectionRefusedError("homeserver unreachable"))

    assert top.statuses() == {
        "kernels": "starting",
        "matrix": "failed: homeserver unreachable",
        "web": "running",
        "discord": "disabled",
    }
    starting.start_with.callback(None)
    assert top.statuses()["kernels"] == "running"


def test_a_failing_stop_does_not_keep_the_others_running() -> None:
    events: list[str] = []
    top = JupybotService(Clock(), stop_timeout=5)
    broken: Deferred[None] = Deferred()
    top.add_part(RecordingPart("first", events))
    top.add_part(RecordingPart("broken", events, stop_with=broken))
    top.startService()
    stopped = top.stopService()
    broken.errback(RuntimeError("boom"))
    assert events[-1] == "stop first"
    assert stopped.called


class SleepyBot(AsyncioPart):
    """Stands in for a chat bot: serves until cancelled."""

    def __init__(self, fail_before_ready: bool = False) -> None:
        super().__init__("bot")
        self.fail_before_ready = fail_before_ready
        self.cancelled = False

    async def run(self) -> None:
        await asyncio.sleep(0)
        if self.fail_before_ready:
            raise ConnectionError("homeserver unreachable")
        self.ready()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


@pytest_twisted.ensureDeferred
async def test_asyncio_part_runs_as_a_task_and_is_cancelled_on_stop() -> None:
    bot = SleepyBot()
    top = JupybotService(reactor, stop_timeout=5)
    top.add_part(bot)
    top.startService()
    assert top.statuses() == {"bot": "starting"}
    await bot._ready  # type: ignore[misc]
    assert top.statuses() == {"bot": "running"}
    await top.stopService()
    assert bot.cancelled
    assert top.statuses() == {"bot": "stopped"}


@pytest_twisted.ensureDeferred
async def test_asyncio_part_failing_to_start_reports_why() -> None:
    bot = SleepyBot(fail_before_ready=True)
    top = JupybotService(reactor, stop_timeout=5)
    top.add_part(bot)
    top.startService()
    await bot._task  # type: ignore[misc]
    assert top.statuses() == {"bot": "failed: homeserver unreachable"}
    await top.stopService()
