"""A crash (SIGKILL) mid-run and a planned restart (SIGTERM), with `twistd jupybot`, a real
Synapse and a real Kernel Gateway: no reply stays "running", no queued run stays unanswered, and
a room hears that its variables go."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from jupybot.commands.bot import NOT_STARTED_LINE, STOPPING_NOTICE
from jupybot.commands.inflight import NOT_RUN_LINE, RESTARTED_LINE
from tests.harness import JupybotProcess, jupybot_config
from tests.peers.kernel_gateway import KernelGateway
from tests.peers.synapse import MatrixUser, Synapse

from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers

# The second print reaches the room as an edit, which the bot can only make once it knows the
# reply's id, and so once it has recorded the reply as running: killed then, it must recover it.
SLOW_RUN = (
    "run\n```python\nimport time\nprint('started', flush=True)\ntime.sleep(1)\n"
    "print('edited', flush=True)\ntime.sleep(20)\n```"
)


async def _queued(client: UserClient, room: str, command: str) -> None:
    """Wait for the bot's ⏳ on C{command}: it is waiting its turn."""
    await client.wait_for(
        lambda r, e: (
            r == room
            and e.get("type") == "m.reaction"
            and e["content"].get("m.relates_to", {}).get("event_id") == command
            and e["content"]["m.relates_to"].get("key") == "⏳"
        )
    )


def _bot_process(
    tmp_path: Path, synapse: Synapse, account: MatrixUser, alice: MatrixUser, gateway: KernelGateway
) -> JupybotProcess:
    config = jupybot_config(
        tmp_path,
        "matrix:\n"
        f"  homeserver: {synapse.base_url}\n"
        f'  user_id: "{account.user_id}"\n'
        '  password: "${TEST_BOT_PASSWORD}"\n'
        f'  allowed_users: ["{alice.user_id}"]\n'
        "gateway:\n"
        f"  url: {gateway.url}\n"
        '  token: "${TEST_GATEWAY_TOKEN}"\n'
        "terminal:\n"
        "  enabled: false\n",
    )
    return JupybotProcess(
        config,
        tmp_path,
        extra_env={"TEST_BOT_PASSWORD": account.password, "TEST_GATEWAY_TOKEN": gateway.token},
    )


@asyncio_test
async def test_a_reply_left_running_by_a_crash_says_so_after_the_restart(
    synapse: Synapse,
    alice: MatrixUser,
    alice_client: UserClient,
    kernel_gateway: KernelGateway,
    tmp_path: Path,
) -> None:
    account = synapse.register(synapse.unique_localpart("crashbot"))
    prefix = "!" + account.localpart
    first = _bot_process(tmp_path, synapse, account, alice, kernel_gateway)
    second = None
    try:
        await asyncio.to_thread(first.wait_for, r"matrix: logged in as", 60)
        room = await alice_client.create_room(invite=[account.user_id])
        await alice_client.wait_until(lambda: alice_client.joined(room, account.user_id))
        command = await alice_client.send(room, f"{prefix} {SLOW_RUN}")
        running = await alice_client.answer(room, command, "edited", within=60)
        assert "⏳ running…" in running["content"]["body"]
        waiting = await alice_client.send(room, f"{prefix} run print('never')")
        await _queued(alice_client, room, waiting)
        first.signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)

        second = _bot_process(tmp_path, synapse, account, alice, kernel_gateway)
        told = await alice_client.answer(room, command, RESTARTED_LINE, within=60)
        assert "started" in told["content"]["body"]  # the output shown so far is kept
        assert "⏳" not in told["content"]["body"]
        await alice_client.answer(room, waiting, NOT_RUN_LINE, within=60)

        # A planned restart: the room, which has a kernel, hears that its variables go.
        ran = await alice_client.send(room, f"{prefix} run x = 1")
        await alice_client.answer(room, ran, "✅ done", within=60)
        slow = await alice_client.send(room, f"{prefix} {SLOW_RUN}")
        await alice_client.answer(room, slow, "edited", within=60)
        waiting = await alice_client.send(room, f"{prefix} run print('never')")
        await _queued(alice_client, room, waiting)
        status = await asyncio.to_thread(second.stop)
        assert status == -signal.SIGTERM, second.output()
        await alice_client.wait_for(
            lambda r, e: r == room and e.get("content", {}).get("body") == STOPPING_NOTICE
        )
        await alice_client.answer(room, waiting, NOT_STARTED_LINE)
    finally:
        for process in (first, second):
            if process is not None:
                await asyncio.to_thread(process.kill_group)
