"""Logging in to a Discord that cannot be reached: retried with backoff on the part's clock."""

from __future__ import annotations

import socket

import pytest_twisted

from jupybot.config import Secret
from jupybot.config.discord import DiscordConfig
from jupybot.discord import DiscordPart
from tests.clocks import SchedulingClock
from tests.matrix.kernels_double import CannedKernels


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_an_unreachable_discord_is_retried_after_1_2_4_seconds() -> None:
    port = closed_port()
    config = DiscordConfig(
        token=Secret("not.a.token"),
        api_base=f"http://127.0.0.1:{port}/api/v10",
        gateway_url=f"ws://127.0.0.1:{port}/",
    )
    clock = SchedulingClock()
    part = DiscordPart(config, CannedKernels(), clock)
    part.start_part()
    try:
        for expected in (1.0, 2.0, 4.0):
            assert await clock.scheduled == expected
            clock.advance(expected)
    finally:
        stopping = part.stop_part()
        if stopping is not None:
            await stopping
