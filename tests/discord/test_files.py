"""Files in and out of a channel's kernel through discord.py and the fake Discord, with a real
Kernel Gateway: `put` with an attachment, pandas reading it, `get` of a file the kernel wrote
coming back as an attachment, and each refusal said in the channel (a file too big, which is
not downloaded; a file that is not a notebook; ``../../etc/passwd``; a link planted out of the
kernel's folder)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted

from jupybot.aio import deferred_from_coroutine
from jupybot.config.commands import NotebooksConfig
from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager
from tests.matrix.user import asyncio_test
from tests.peers.kernel_gateway import KernelGateway

from .conftest import World, start_world, stop_world

pytestmark = pytest.mark.peers


@pytest_twisted.async_yield_fixture
async def files_world(kernel_gateway: KernelGateway) -> AsyncIterator[World]:
    from twisted.internet import reactor

    manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    manager.connect(kernel_gateway.url, kernel_gateway.token)
    started = await deferred_from_coroutine(
        start_world(manager, NotebooksConfig(file_mb=1), commands_per_minute=0)
    )
    yield started
    await deferred_from_coroutine(stop_world(started))
    await manager.shutdown_all()


async def _says(world: World, channel: dict[str, Any], text: str, *files: Any) -> dict[str, Any]:
    """The bot's last message after C{text}, once one ends the exchange (✅, ❌, 📥 or a file)."""
    before = len(world.discord.bot_messages(channel["id"]))
    await world.discord.user_says(world.alice, channel, text, files=list(files))

    def answered() -> dict[str, Any] | None:
        for message in world.discord.bot_messages(channel["id"])[before:]:
            content = message["content"]
            if message["files"] or content.startswith(("❌", "📥")) or "✅ done" in content:
                return message
        return None

    message: dict[str, Any] = await world.discord.wait_for(answered, within=60)
    return message


@asyncio_test
async def test_put_a_csv_read_it_with_pandas_get_a_file_back_and_refusals(
    files_world: World,
) -> None:
    world = files_world
    channel = world.discord.dm_channel(world.alice)
    saved = await _says(
        world, channel, "put", ("scores.csv", "text/csv", b"name,score\nada,3\nbob,4\n")
    )
    assert saved["content"].startswith("📥 Saved ") and "/scores.csv (23 bytes)" in saved["content"]
    ran = await _says(
        world,
        channel,
        "run\n```\nimport pandas as pd\nprint(pd.read_csv('scores.csv').score.sum())\n```",
    )
    assert ran["content"].startswith("```\n7\n```")

    name = f"report-{uuid.uuid4().hex[:8]}.txt"
    await _says(world, channel, f"run open('{name}', 'w').write('kernel wrote this')")
    got = await _says(world, channel, f"get {name}")
    [attached] = got["files"]
    assert (attached["filename"], attached["data"]) == (name, b"kernel wrote this")

    refused = await _says(world, channel, "get ../../etc/passwd")
    assert refused["content"].startswith("❌ '..' is not allowed in a path")
    link = f"passwd-{uuid.uuid4().hex[:8]}"
    await _says(world, channel, f"run __import__('os').symlink('/etc/passwd', '{link}')")
    refused = await _says(world, channel, f"get {link}")
    assert refused["content"].startswith(f"❌ {link} is a symbolic link")
    assert not refused["files"]
    too_big = await _says(world, channel, "put", ("big.csv", "text/csv", b"x" * (1024 * 1024 + 1)))
    assert too_big["content"] == (
        "❌ That file is 1,048,577 bytes: 'put' takes files of up to 1,048,576 bytes."
    )
    not_notebook = await _says(world, channel, "run", ("data.csv", "text/csv", b"a,b\n1,2\n"))
    assert not_notebook["content"] == "❌ That file is not a Jupyter notebook: it is not JSON."
