"""/ping's view of the Discord part: down while its gateway connection is lost, up once resumed
(real discord.py against the fake Discord server)."""

from __future__ import annotations

import asyncio

import pytest

from tests.matrix.user import asyncio_test

from .conftest import World

pytestmark = pytest.mark.peers


@asyncio_test
async def test_the_part_is_down_from_a_lost_connection_until_discord_py_resumes_it(
    world: World,
) -> None:
    part = world.part
    assert part.problem() is None  # connected
    disconnected = part.client.wait_for("disconnect", timeout=15)
    resumed = part.client.wait_for("resumed", timeout=30)
    for socket in list(world.discord._sockets):
        await socket.close()
    await disconnected
    # The part's own handler is a task of its own, scheduled by the same dispatch.
    await asyncio.sleep(0)
    assert part.problem() == "the Discord gateway connection is lost; reconnecting"
    await resumed  # discord.py reconnects after its backoff, and resumes the session
    await asyncio.sleep(0)
    assert part.problem() is None
