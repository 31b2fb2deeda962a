"""End to end: `twistd jupybot` takes POST /contact and DMs the owner through the fake Discord,
also when Discord was down at first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.matrix.user import asyncio_test
from tests.peers.fake_discord import FakeDiscord, contact_server

pytestmark = pytest.mark.peers


@asyncio_test
async def test_a_contact_message_reaches_the_owner_once_after_discord_comes_back(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord()
    await fake.start()
    owner = fake.add_user("owner")
    fake.down = True
    server = contact_server(tmp_path, fake, owner)
    try:
        # Blocking waits go to a thread: the fake Discord answers on this loop meanwhile.
        await asyncio.to_thread(server.wait_listening)
        await asyncio.to_thread(server.wait_for, "contact: running")
        body = {"name": "Ada", "email": "ada@example.org", "message": "Hire me?"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(server.base_url + "/contact", json=body) as response,
        ):
            assert response.status == 202
            message_id = (await response.json())["id"]
        await asyncio.to_thread(server.wait_for, "contact: discord unavailable")
        fake.down = False  # Discord is back: the retry goes through
        dm = fake.dm_channel(owner)
        [sent] = await fake.wait_for(lambda: fake.bot_messages(dm["id"]), within=60)
        assert sent["embeds"][0]["footer"]["text"] == f"contact #{message_id}"
        await asyncio.to_thread(
            server.wait_for, f"contact: message {message_id} delivered to discord"
        )
        assert len(fake.bot_messages(dm["id"])) == 1
        assert fake.bot_token not in "\n".join(server.lines)  # the secret never reaches logs
    finally:
        server.stop()
        await fake.stop()
