"""A chat user of a real `twistd jupybot` (started as the README starts it, with its embedded
gateway and the Discord bot, against a fake Discord) attacks from the kernel that `run` gives
them. Each attack must be refused; with `sandbox.mode: none` the same attacks work (the control),
so the test fails when the protection is switched off."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted

from jupybot.aio import deferred_from_coroutine
from tests.harness import JupybotProcess, jupybot_config
from tests.kernels.kernel_python import requires_kernel_python
from tests.matrix.user import asyncio_test
from tests.peers.fake_discord import FakeDiscord, Json

pytestmark = [pytest.mark.peers, requires_kernel_python]

SECRET = "jupybot-e2e-kernel-secret-51c3a8"
VICTIM_SECRET = "the-owners-room-variable-6e02"

# One `run` of the attacker; each attack prints `VERDICT <name>=yes|no`. (Fits one message.)
ATTACK = """
import json, os, socket
def grab(path):
    try:
        return open(path, 'rb').read()
    except OSError:
        return b''
procs = [p for p in os.listdir('/proc') if p.isdigit()]
def anywhere(needle):
    return any(needle in grab(f'/proc/{p}/environ') for p in procs)
def verdict(name, got):
    print(f'VERDICT {name}=' + ('yes' if got else 'no'))
verdict('password', SECRET in str(os.environ) or anywhere(SECRET.encode()))
verdict('gateway_token', anywhere(b'KG_AUTH_TOKEN='))
verdict('config', SECRET.encode() in grab(CONFIG))
verdict('state', os.path.isdir(STATE) and bool(os.listdir(STATE)))
verdict('jupybot', str(PID) in procs)
try:
    socket.create_connection(('127.0.0.1', PORT), timeout=5).close()
    verdict('loopback', True)
except OSError:
    verdict('loopback', False)
try:
    from jupyter_client import BlockingKernelClient
    c = BlockingKernelClient()
    c.load_connection_info(json.loads(grab(VICTIM)))
    c.start_channels()
    c.wait_for_ready(timeout=20)
    out = []
    c.execute_interactive('print(secret)', timeout=20,
                          output_hook=lambda m: out.append(m['content'].get('text', '')))
    verdict('other_room', VICTIM_SECRET in ''.join(out))
except Exception:
    verdict('other_room', False)
print('DONE')
"""
TARGETS = ["password", "gateway_token", "config", "state", "jupybot", "loopback", "other_room"]


@dataclass
class Server:
    process: JupybotProcess
    discord: FakeDiscord
    owner: Json
    alice: Json
    workdir: Path


def start_server(workdir: Path, mode: str, discord: FakeDiscord, owner: Json, alice: Json) -> JupybotProcess:  # fmt: skip
    workdir.chmod(0o755)  # as a checkout usually is: readable by every local user
    extra = (
        f"sandbox:\n  mode: {mode}\n"
        "terminal:\n  enabled: false\n"
        "discord:\n"
        '  token: "${JUPYBOT_DISCORD_TOKEN}"\n'
        f"  owner_id: {owner['id']}\n"
        f'  allowed_users: ["{alice["id"]}"]\n'
        f"  api_base: {discord.api_base}\n"
        f"  gateway_url: {discord.gateway_url}\n"
        f"# matrix password: {SECRET}\n"
    )
    server = JupybotProcess(
        jupybot_config(workdir, extra),
        workdir,
        extra_env={"JUPYBOT_DISCORD_TOKEN": discord.bot_token, "JUPYBOT_MATRIX_PASSWORD": SECRET},
    )
    server.wait_listening()
    server.wait_for("kernels: running", 90)
    return server


async def started(workdir: Path, mode: str) -> Server:
    discord = FakeDiscord()
    await discord.start()
    owner, alice = discord.add_user("owner"), discord.add_user("alice")
    process = await asyncio.to_thread(start_server, workdir, mode, discord, owner, alice)
    await asyncio.wait_for(discord.identified.wait(), 60)
    return Server(process, discord, owner, alice, workdir)


async def stopped(server: Server) -> None:
    await asyncio.to_thread(server.process.stop)
    await server.discord.stop()


@pytest_twisted.async_yield_fixture(scope="module")
async def contained(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    server = await deferred_from_coroutine(started(tmp_path_factory.mktemp("k"), "bubblewrap"))
    yield server
    await deferred_from_coroutine(stopped(server))


@pytest_twisted.async_yield_fixture(scope="module")
async def exposed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    server = await deferred_from_coroutine(started(tmp_path_factory.mktemp("k"), "none"))
    yield server
    await deferred_from_coroutine(stopped(server))


async def run_in_chat(server: Server, user: Json, code: str, until: str) -> str:
    """C{user} sends `run` with C{code} in a direct message; the bot's reply once it holds
    C{until}."""
    discord = server.discord
    channel = discord.dm_channel(user)
    await discord.user_says(user, channel, f"run\n```python\n{code}\n```")
    [reply] = await discord.wait_for(
        lambda: [
            m["content"] for m in discord.bot_messages(channel["id"]) if until in m["content"]
        ],
        within=120,
    )
    return str(reply)


async def verdicts(server: Server) -> dict[str, str]:
    # The owner's room keeps a secret; its kernel says where its connection file is.
    victim_code = (
        f"secret = {VICTIM_SECRET!r}\n"
        "from ipykernel.connect import get_connection_file\n"
        "print('FILE', get_connection_file())"
    )
    reply = await run_in_chat(server, server.owner, victim_code, "FILE ")
    match = re.search(r"FILE (\S+)", reply)
    assert match is not None, reply
    port = int(server.process.base_url.rsplit(":", 1)[1])
    pid = server.process.process.pid
    code = (
        f"SECRET, VICTIM_SECRET = {SECRET!r}, {VICTIM_SECRET!r}\n"
        f"CONFIG, STATE = {str(server.workdir / 'config.yml')!r}, {str(server.workdir / 'var')!r}\n"
        f"PID, PORT, VICTIM = {pid}, {port}, {match.group(1)!r}\n" + ATTACK
    )
    assert len(code) < 1950
    reply = await run_in_chat(server, server.alice, code, "DONE")
    return dict(re.findall(r"VERDICT (\w+)=(yes|no)", reply))


@asyncio_test
async def test_a_chat_user_gets_nothing_of_jupybots_and_without_the_sandbox_everything(
    contained: Server, exposed: Server
) -> None:
    assert await verdicts(contained) == dict.fromkeys(TARGETS, "no")
    assert await verdicts(exposed) == dict.fromkeys(TARGETS, "yes")
