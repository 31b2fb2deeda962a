"""The issue's race on real kernels: in a fresh room, `run a = 1` and `run print(a)` sent at once
by two people end in one kernel, and the second sees the first's variable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_twisted

from jupybot.aio import deferred_from_coroutine
from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager, KernelManager
from jupybot.rendering import render_outputs
from tests.peers.kernel_gateway import KernelGateway
from tests.peers.synapse import Synapse

from .conftest import BotRunner
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


@pytest_twisted.async_yield_fixture
async def kernels(kernel_gateway: KernelGateway) -> AsyncIterator[KernelManager]:
    from twisted.internet import reactor

    manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    manager.connect(kernel_gateway.url, kernel_gateway.token)
    yield manager
    await manager.shutdown_all()


@pytest_twisted.async_yield_fixture
async def bob_client(synapse: Synapse) -> AsyncIterator[UserClient]:
    client = UserClient(synapse, synapse.register(synapse.unique_localpart("bob")))
    await deferred_from_coroutine(client.start())
    yield client
    await deferred_from_coroutine(client.stop())


@asyncio_test
async def test_racing_runs_in_a_fresh_room_share_one_kernel(
    bot: BotRunner, alice_client: UserClient, bob_client: UserClient
) -> None:
    bot.render = render_outputs
    await bot.start(allowed_users=(alice_client.user_id, bob_client.user_id))
    room = await alice_client.create_room(invite=[bot.user_id, bob_client.user_id])
    await bob_client.join(room)
    await alice_client.wait_until(
        lambda: (
            alice_client.joined(room, bot.user_id) and alice_client.joined(room, bob_client.user_id)
        )
    )
    first = await alice_client.send(room, "!bot run a = 1")
    second, third = await asyncio.gather(
        alice_client.send(room, "!bot run print('alice sees', a)"),
        bob_client.send(room, "!bot run print('bob sees', a)"),
    )
    await alice_client.answer(room, first, "✅ done", within=90)
    for command, who in ((second, "alice"), (third, "bob")):
        answer = await alice_client.answer(room, command, "✅ done", within=90)
        assert f"{who} sees 1" in answer["content"]["body"]
    listed = await alice_client.send(room, "!bot kernels")
    answer = await alice_client.answer(room, listed, "Kernels here")
    assert answer["content"]["body"].count("(python3)") == 1
