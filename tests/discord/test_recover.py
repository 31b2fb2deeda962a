"""Telling the replies a restart cut short, when that fails: the failure is logged at once, not
left in a Deferred nobody holds (which Twisted reports, if ever, when it is collected)."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import implementer

from jupybot.commands.inflight import ConversationFinder
from jupybot.config import Secret
from jupybot.config.discord import DiscordConfig
from jupybot.discord import DiscordPart
from tests.matrix.kernels_double import CannedKernels


def unreadable_record(find: ConversationFinder) -> Deferred[None]:
    return fail(OSError("discord-running.json: Input/output error"))


def test_a_failed_recovery_is_logged_when_discord_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    config = DiscordConfig(token=Secret("not.a.token"))
    part = DiscordPart(config, CannedKernels(), Clock())
    monkeypatch.setattr(part.commands, "recover", unreadable_record)
    logged: list[LogEvent] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        logged.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        part.connected()
    finally:
        globalLogPublisher.removeObserver(observe)
    failures = [event for event in logged if "log_failure" in event]
    assert [formatEvent(event) for event in failures] == [
        "discord: could not tell the replies a restart cut short"
    ]
    assert "Input/output error" in failures[0]["log_failure"].getErrorMessage()
