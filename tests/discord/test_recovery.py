"""`twistd jupybot` on the fake Discord and a real Kernel Gateway, SIGKILLed mid-run: the reply
left "running" is told at the next start; a SIGTERM tells the channel its variables go."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from jupybot.commands.bot import STOPPING_NOTICE
from jupybot.commands.inflight import RESTARTED_LINE
from tests.harness import JupybotProcess, jupybot_config
from tests.matrix.user import asyncio_test
from tests.peers.fake_discord import FakeDiscord, Json
from tests.peers.kernel_gateway import KernelGateway

pytestmark = pytest.mark.peers

# The second print reaches the chat as an edit, which the bot can only make once it knows the
# reply's id, and so once it has recorded the reply as running: killed then, it must recover it.
SLOW_RUN = (
    "run\n```python\nimport time\nprint('started', flush=True)\ntime.sleep(1)\n"
    "print('edited', flush=True)\ntime.sleep(20)\n```"
)


def _bot_process(
    tmp_path: Path, fake: FakeDiscord, alice: Json, gateway: KernelGateway
) -> JupybotProcess:
    extra = f"""
discord:
  token: "${{TEST_DISCORD_TOKEN}}"
  allowed_users: ["{alice["id"]}"]
  api_base: {fake.api_base}
  gateway_url: {fake.gateway_url}
  edit_interval_seconds: 0.5
gateway:
  url: {gateway.url}
  token: "${{TEST_GATEWAY_TOKEN}}"
terminal:
  enabled: false
"""
    return JupybotProcess(
        jupybot_config(tmp_path, extra),
        tmp_path,
        extra_env={"TEST_DISCORD_TOKEN": fake.bot_token, "TEST_GATEWAY_TOKEN": gateway.token},
    )


@asyncio_test
async def test_a_reply_left_running_by_a_crash_says_so_after_the_restart(
    kernel_gateway: KernelGateway, tmp_path: Path
) -> None:
    fake = FakeDiscord()
    await fake.start()
    alice = fake.add_user("alice")
    channel = fake.dm_channel(alice)
    first = _bot_process(tmp_path, fake, alice, kernel_gateway)
    second = None
    try:
        await asyncio.to_thread(first.wait_for, "discord: connected", 60)
        await fake.user_says(alice, channel, SLOW_RUN)
        [reply] = await fake.wait_for(
            lambda: [m for m in fake.bot_messages(channel["id"]) if "edited" in m["content"]],
            within=60,
        )
        assert "running" in reply["content"]
        first.signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)

        fake.identified.clear()
        second = _bot_process(tmp_path, fake, alice, kernel_gateway)
        await fake.wait_for(lambda: RESTARTED_LINE in reply["content"], within=60)
        assert "started" in reply["content"]

        await fake.user_says(alice, channel, "run x = 1")
        await fake.wait_for(
            lambda: [m for m in fake.bot_messages(channel["id"]) if "done" in m["content"]],
            within=60,
        )
        status = await asyncio.to_thread(second.stop)
        assert status == -signal.SIGTERM, second.output()
        notice = fake.bot_messages(channel["id"])[-1]["content"]
        # Discord Markdown escapes the notice's quotes and the like: compare the words.
        assert notice.replace("\\", "") == STOPPING_NOTICE
    finally:
        for process in (first, second):
            if process is not None:
                await asyncio.to_thread(process.kill_group)
        await fake.stop()
