"""The Matrix bot against a real Synapse, with a real matrix-nio client as the person."""

from __future__ import annotations

import pytest

from .conftest import BotRunner
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


@asyncio_test
async def test_invite_join_help_and_run(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    help_id = await alice_client.send(room, "!bot help")
    reply = await alice_client.answer(room, help_id, "Commands:")
    content = reply["content"]
    assert content["msgtype"] == "m.notice"
    assert "!bot run CODE" in content["body"]
    assert content["format"] == "org.matrix.custom.html"
    assert content["m.mentions"] == {}
    run_id = await alice_client.send(room, "!bot run 1+1")
    answer = await alice_client.answer(room, run_id, "✅ done")
    assert "echo: 1+1" in answer["content"]["body"]
    assert "<pre><code>echo: 1+1</code></pre>" in answer["content"]["formatted_body"]


@asyncio_test
async def test_direct_chat_needs_no_prefix(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id], direct=True)
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    run_id = await alice_client.send(room, "run 6*7")
    await alice_client.answer(room, run_id, "echo: 6*7")
    hello_id = await alice_client.send(room, "hello")
    await alice_client.answer(room, hello_id, "Unknown command 'hello'. Try 'help'")
