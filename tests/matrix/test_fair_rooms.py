"""One room's flood and another room's runs, with the bot's account at Synapse's default
`rc_message` (0.2 events a second after a burst of 10): the quiet room is answered within a
slot or so of the limit, not after the flooded room's backlog of refusals and reactions."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted

from jupybot.aio import deferred_from_coroutine
from jupybot.config import Secret
from jupybot.config.matrix import MatrixConfig
from jupybot.state import StateDirectory
from tests.peers.synapse import MatrixUser, Synapse, _request

from .conftest import BotRunner
from .kernels_double import CannedKernels
from .user import UserClient, asyncio_test

pytestmark = [
    pytest.mark.peers,
    # Synapse's default limit only: the stricter one halves every figure and proves no more.
    pytest.mark.parametrize("limited_synapse", ["default"], indirect=True),
]

FLOOD = 100
QUIET_RUNS = 10
QUIET_SPACING_SECONDS = 2.0


def unlimited(synapse: Synapse, admin: MatrixUser, user: MatrixUser) -> MatrixUser:
    """C{user} may send as fast as it likes: the test's people are not what is measured."""
    url = f"{synapse.base_url}/_synapse/admin/v1/users/{user.user_id}/override_ratelimit"
    _request("POST", url, {"messages_per_second": 0, "burst_count": 0}, token=admin.access_token)
    return user


@pytest.fixture
def people(limited_synapse: Synapse) -> tuple[MatrixUser, MatrixUser]:
    admin = limited_synapse.register(limited_synapse.unique_localpart("admin"), admin=True)
    return tuple(  # type: ignore[return-value]
        unlimited(
            limited_synapse, admin, limited_synapse.register(limited_synapse.unique_localpart(name))
        )
        for name in ("flooder", "quiet")
    )


@pytest_twisted.async_yield_fixture
async def clients(
    limited_synapse: Synapse, people: tuple[MatrixUser, MatrixUser]
) -> AsyncIterator[tuple[UserClient, UserClient]]:
    started = [UserClient(limited_synapse, person) for person in people]
    for client in started:
        await deferred_from_coroutine(client.start())
    yield started[0], started[1]
    for client in started:
        await deferred_from_coroutine(client.stop())


@pytest_twisted.async_yield_fixture
async def bot(
    limited_synapse: Synapse, tmp_path: Path, people: tuple[MatrixUser, MatrixUser]
) -> AsyncIterator[BotRunner]:
    account = limited_synapse.register(limited_synapse.unique_localpart("bot"))
    config = MatrixConfig(
        homeserver=limited_synapse.base_url,
        user_id=account.user_id,
        access_token=None,
        password=Secret(account.password),
        prefix="!bot",
        allowed_users=tuple(person.user_id for person in people),
        admins=(),
    )
    runner = BotRunner(
        limited_synapse, account, config, StateDirectory(tmp_path / "state"), CannedKernels()
    )
    yield runner
    await deferred_from_coroutine(runner.stop())


@asyncio_test
async def test_a_flooded_room_does_not_delay_another_rooms_answers(
    bot: BotRunner, clients: tuple[UserClient, UserClient]
) -> None:
    flooder, quiet = clients
    part = await bot.start()
    flooded = await flooder.create_room(invite=[bot.user_id])
    calm = await quiet.create_room(invite=[bot.user_id])
    await flooder.wait_until(lambda: flooder.joined(flooded, bot.user_id))
    await quiet.wait_until(lambda: quiet.joined(calm, bot.user_id))

    async def flood() -> None:
        for n in range(FLOOD):
            await flooder.send(flooded, f"!bot run {n}")

    flooding = asyncio.ensure_future(flood())
    latencies = []
    for n in range(QUIET_RUNS):
        command = await quiet.send(calm, f"!bot run quiet {n}")
        answer = await quiet.answer(calm, command, "✅ done", within=120)
        sent = next(e for r, e in quiet.events if r == calm and e["event_id"] == command)
        latencies.append((answer["origin_server_ts"] - sent["origin_server_ts"]) / 1000)
        await asyncio.sleep(QUIET_SPACING_SECONDS)  # a person's pace between two runs
    await flooding
    assert part.bot is not None and part.bot.api.rate_limited > 0, "the limit was never met"
    p50 = statistics.median(latencies)
    print(f"quiet room's answers: p50 {p50:.1f} s, worst {max(latencies):.1f} s")
    # A slot of the default limit is 5 s: the answer waits for the flooded room's send that
    # holds the slot, then goes.
    assert p50 <= 5.0, latencies
