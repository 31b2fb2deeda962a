"""The Discord bot with a real Kernel Gateway: a plot arrives as an image attachment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nbformat
import pytest
import pytest_twisted
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupybot.aio import deferred_from_coroutine
from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager
from tests.matrix.user import asyncio_test
from tests.peers.kernel_gateway import KernelGateway

from .conftest import World, start_world, stop_world

pytestmark = pytest.mark.peers


@pytest_twisted.async_yield_fixture
async def real_world(kernel_gateway: KernelGateway) -> AsyncIterator[World]:
    from twisted.internet import reactor

    manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    manager.connect(kernel_gateway.url, kernel_gateway.token)
    started = await deferred_from_coroutine(start_world(manager))
    yield started
    await deferred_from_coroutine(stop_world(started))
    await manager.shutdown_all()


@asyncio_test
async def test_a_plot_arrives_as_an_image(real_world: World) -> None:
    world = real_world
    channel = world.discord.dm_channel(world.alice)
    code = (
        "run\n```python\nimport matplotlib\n"
        "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint('plotted')\n```"
    )
    await world.discord.user_says(world.alice, channel, code)
    [image] = await world.discord.wait_for(
        lambda: [
            f
            for m in world.discord.bot_messages(channel["id"])
            for f in m["files"]
            if f["filename"].endswith(".png")
        ],
        within=60,
    )
    assert image["data"].startswith(b"\x89PNG")
    await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if "plotted" in m["content"]]
    )


@asyncio_test
async def test_an_interrupted_run_ends_aborted(real_world: World) -> None:
    world = real_world
    channel = world.discord.dm_channel(world.alice)
    code = "run\n```python\nimport time\nprint('going', flush=True)\ntime.sleep(60)\n```"
    await world.discord.user_says(world.alice, channel, code)
    [reply] = await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if "going" in m["content"]],
        within=60,
    )
    await world.discord.user_says(world.alice, channel, "interrupt")
    await world.discord.wait_for(lambda: "⏹ aborted" in reply["content"], within=30)
    assert "KeyboardInterrupt" not in reply["content"]
    assert "interrupted" in reply["content"]


@asyncio_test
async def test_a_notebook_sent_with_run_comes_back_executed(real_world: World) -> None:
    world = real_world
    channel = world.discord.dm_channel(world.alice)
    notebook = new_notebook(
        cells=[new_markdown_cell("# Homework"), new_code_cell("n = 6"), new_code_cell("n * 7")]
    )
    data = nbformat.writes(notebook).encode()
    await world.discord.user_says(
        world.alice, channel, "run", files=[("homework.ipynb", "application/json", data)]
    )
    [executed] = await world.discord.wait_for(
        lambda: [
            f
            for m in world.discord.bot_messages(channel["id"])
            for f in m["files"]
            if f["filename"] == "homework.ipynb"
        ],
        within=60,
    )
    back = nbformat.reads(executed["data"].decode(), as_version=4)
    nbformat.validate(back)
    assert back.cells[2].outputs[0].data["text/plain"] == "42"
    assert any(
        "📓 homework.ipynb: ✅ ran 2/2 cells" in m["content"]
        for m in world.discord.bot_messages(channel["id"])
    )
    # A CSV is refused as a notebook, saying why.
    await world.discord.user_says(
        world.alice, channel, "run", files=[("data.csv", "text/csv", b"a,b\n1,2\n")]
    )
    await world.discord.wait_for(
        lambda: [
            m
            for m in world.discord.bot_messages(channel["id"])
            if m["content"] == "❌ That file is not a Jupyter notebook: it is not JSON."
        ]
    )
