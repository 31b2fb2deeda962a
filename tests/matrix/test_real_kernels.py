"""The Matrix bot end to end: a person's client, real Synapse, the bot, a real Kernel Gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_twisted

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager, KernelManager
from jupybot.rendering import render_outputs
from tests.peers.kernel_gateway import KernelGateway

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


@asyncio_test
async def test_code_output_plots_errors_and_input_from_a_room(
    bot: BotRunner, alice_client: UserClient
) -> None:
    bot.render = render_outputs
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))

    run_id = await alice_client.send(room, "!bot run\n```python\nprint('hello')\n6 * 7\n```")
    answer = (await alice_client.answer(room, run_id, "✅ done"))["content"]
    assert "hello\n42" in answer["body"]

    plot = (
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    )
    plot_id = await alice_client.send(room, f"!bot run\n```\n{plot}\n```")
    _, image = await alice_client.wait_for(
        lambda r, e: r == room and e["content"].get("msgtype") == "m.image"
    )
    assert image["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == plot_id
    info = image["content"]["info"]
    assert info["mimetype"] == "image/png" and info["w"] > 100 and info["h"] > 100
    assert (await alice_client.download(image["content"]["url"])).startswith(b"\x89PNG")

    fail_id = await alice_client.send(room, "!bot run 1/0")
    failed = (await alice_client.answer(room, fail_id, "❌ error"))["content"]
    assert failed["body"].startswith("ZeroDivisionError: division by zero")
    assert "\x1b" not in failed["body"]

    ask_id = await alice_client.send(room, "!bot run print('hi', input('name? '))")
    await alice_client.answer(room, ask_id, "name?")
    await alice_client.send(room, "Ada")
    greeted = (await alice_client.answer(room, ask_id, "✅ done"))["content"]
    assert "hi Ada" in greeted["body"]
