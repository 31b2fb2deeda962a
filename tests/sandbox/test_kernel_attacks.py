"""A chat user's code attacks from a kernel of the real embedded gateway (through the kernel
core, and through the Discord adapter's `run`); every attack must be refused.

Two kernels parts run side by side, one with the sandbox (``sandbox.mode: bubblewrap``, what
this host allows) and one without (``none``), each with an attacker's kernel and a victim's (a
second chat owner). jupybot's environment holds a bot password, its state directory a Matrix
access token. Each attack that must be refused in the sandbox must also succeed without it:
that shows the test fails with the protection switched off.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

import jupybot
from jupybot.aio import await_deferred
from jupybot.config.kernels import GatewayConfig
from jupybot.config.sandbox import SandboxConfig
from jupybot.kernels import KernelsPart
from jupybot.sandbox import Sandbox
from jupybot.state import StateDirectory
from tests.discord.conftest import start_world, stop_world
from tests.kernels.kernel_python import jupybot_umask, requires_kernel_python
from tests.kernels.listener import RecordingListener
from tests.kernels.test_gateway import timeboxed
from tests.matrix.user import asyncio_test

pytestmark = requires_kernel_python

PASSWORD = "jupybot-matrix-password-7c1e4a90"
ACCESS_TOKEN = "syt_jupybot_access_token_5d2b0f"
VICTIM_SECRET = "the-victim-room-variable-93af"
ATTACKS = "\n".join(
    Path(__file__).with_name(name).read_text() for name in ("attacks.py", "kernel_attacks.py")
)
# The sandboxed kernels' limits here: small enough to hit quickly.
MEMORY_MB = 512
PROCESSES = 32


@dataclass
class Server:
    """One kernels part with an embedded gateway, as jupybot runs it, and what it protects."""

    mode: str
    part: KernelsPart
    state: Path
    sandbox: Sandbox
    # The victim's kernel: its connection file (as the host and the kernel see it).
    victim_connection_file: str = ""
    victim_connection: dict[str, object] | None = None

    @property
    def gateway_token(self) -> str:
        assert self.part.embedded is not None
        return self.part.embedded.token

    @property
    def gateway_port(self) -> int:
        assert self.part.embedded is not None and self.part.embedded.url is not None
        return int(self.part.embedded.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def bot_password() -> Iterator[int]:
    """jupybot's environment holds the bot password, as `${JUPYBOT_MATRIX_PASSWORD}` in
    config.yml asks. The value is set here before the gateways start (what they could inherit);
    a process standing for jupybot holds it from its start (what /proc shows of jupybot)."""
    os.environ["JUPYBOT_MATRIX_PASSWORD"] = PASSWORD
    process = subprocess.Popen(["sleep", "600"], env={"JUPYBOT_MATRIX_PASSWORD": PASSWORD})
    yield process.pid
    process.kill()
    process.wait()
    del os.environ["JUPYBOT_MATRIX_PASSWORD"]


@pytest.fixture(scope="module")
def listener_port() -> Iterator[int]:
    """A loopback port of jupybot's (its web site)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def read_bytes(path: str) -> bytes:
    """A file as jupybot's user sees it."""
    return Path(path).read_bytes()


async def run(server: Server, owner: str, code: str, may_die: bool = False) -> str:
    listener = RecordingListener()
    result = await timeboxed(server.part.manager.execute(owner, code, listener), 120)
    if may_die and result.status == "died":
        return '{"succeeded": false, "died": true}'
    assert result.status in ("ok", "error"), (result, listener.events)
    return listener.text()


async def attack(
    server: Server, name: str, *args: object, may_die: bool = False
) -> dict[str, object]:
    """One attack of kernel_attacks.py, run in the attacker's kernel; its verdict. With
    C{may_die}, a kernel killed at its limit is a refused attack."""
    call = f"print(__import__('json').dumps({name}(*{tuple(map(str, args))!r})))"
    text = await run(server, "matrix:!attacker:example.org", f"{ATTACKS}\n{call}", may_die)
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, f"{name} printed no verdict: {text!r}"
    verdict: dict[str, object] = json.loads(lines[-1])
    return verdict


async def start_server(mode: str, directory: Path) -> AsyncIterator[Server]:
    sandbox = Sandbox(SandboxConfig(mode=mode))
    sandbox.prepare()
    state = StateDirectory(directory / "var")
    state.ensure()
    session = state.path / "matrix-session.json"
    session.write_text(json.dumps({"user_id": "@bot:example.org", "access_token": ACCESS_TOKEN}))
    session.chmod(0o600)
    # No warm pool: the attacker's and the victim's are the only kernels (sandboxed_sockets).
    config = replace(
        GatewayConfig(url=None, token=None),
        kernel_memory_mb=MEMORY_MB,
        kernel_processes=PROCESSES,
        prestart=0,
    )
    part = KernelsPart(config, reactor, state, sandbox)
    with jupybot_umask():
        part.startService()
    server = Server(mode, part, state.path, sandbox)
    try:
        # The victim's kernel keeps a secret and says where its connection file is.
        text = await run(
            server,
            "matrix:!victim:example.org",
            f"secret = {VICTIM_SECRET!r}\n"
            "from ipykernel.connect import get_connection_file\n"
            "print(get_connection_file())",
        )
        server.victim_connection_file = text.strip()
        server.victim_connection = json.loads(read_bytes(server.victim_connection_file))
        yield server
    finally:
        await part.stopService()
        sandbox.close()


@pytest_twisted.async_yield_fixture(scope="module")
async def sandboxed(
    bot_password: int, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    async for server in start_server("bubblewrap", tmp_path_factory.mktemp("sandboxed")):
        yield server


@pytest_twisted.async_yield_fixture(scope="module")
async def unsandboxed(
    bot_password: int, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    async for server in start_server("none", tmp_path_factory.mktemp("unsandboxed")):
        yield server


def victim_socket(server: Server) -> tuple[object, ...]:
    info = server.victim_connection
    assert info is not None
    return info["transport"], info["ip"], info["shell_port"]


# What a chat user is after -> the attack that gets it, given the server and jupybot's pids.
ATTACKS_ON: dict[str, Callable[[Server, int, int], tuple[object, ...]]] = {
    "the bot password": lambda s, bot, port: ("secrets_in_reach", PASSWORD),
    "the gateway's token": lambda s, bot, port: ("secrets_in_reach", s.gateway_token),
    "the bot's access token in var/": lambda s, bot, port: (
        "read",
        s.state / "matrix-session.json",
        ACCESS_TOKEN,
    ),
    "the list of var/": lambda s, bot, port: ("list_directory", s.state),
    "jupybot's checkout": lambda s, bot, port: (
        "read",
        Path(jupybot.__file__).with_name("app.py"),
        "build_service",
    ),
    "another owner's kernel, with its key": lambda s, bot, port: (
        "run_in_other_kernel",
        s.victim_connection_file,
        "print(secret)",
        VICTIM_SECRET,
    ),
    "another kernel's sockets": lambda s, bot, port: ("reach_other_kernel", *victim_socket(s)),
    "the gateway's port": lambda s, bot, port: ("connect", s.gateway_port),
    "jupybot's port": lambda s, bot, port: ("connect", port),
    "jupybot's process": lambda s, bot, port: ("see_process", bot),
}


@pytest.mark.parametrize("target", list(ATTACKS_ON))
@pytest_twisted.ensureDeferred
async def test_refused_in_the_sandbox_and_possible_without_it(
    target: str,
    sandboxed: Server,
    unsandboxed: Server,
    bot_password: int,
    listener_port: int,
) -> None:
    for server, expected in ((sandboxed, False), (unsandboxed, True)):
        name, *args = ATTACKS_ON[target](server, bot_password, listener_port)
        verdict = await attack(server, str(name), *args)
        assert verdict["succeeded"] is expected, (server.mode, target, verdict)


@pytest_twisted.ensureDeferred
async def test_neither_the_gateway_nor_a_kernel_inherits_jupybots_environment(
    sandboxed: Server, unsandboxed: Server
) -> None:
    for server in (sandboxed, unsandboxed):
        assert server.part.embedded is not None and server.part.embedded.pid is not None
        environ = read_bytes(f"/proc/{server.part.embedded.pid}/environ")
        names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
        assert PASSWORD.encode() not in environ
        assert "JUPYBOT_MATRIX_PASSWORD" not in names
        verdict = await attack(server, "identity")
        assert isinstance(verdict["environ"], list)
        assert not {"JUPYBOT_MATRIX_PASSWORD", "KG_AUTH_TOKEN"} & set(verdict["environ"])


@pytest_twisted.ensureDeferred
async def test_a_kernel_is_nobody_with_nothing(sandboxed: Server) -> None:
    verdict = await attack(sandboxed, "identity")
    assert verdict["uid"] == 1000
    assert verdict["cap_eff"] == "0000000000000000" and verdict["no_new_privs"] == "1"
    assert verdict["interfaces"] == ["lo"]  # no network at all
    assert verdict["home"] == "/home/visitor"
    # An empty /tmp (but for the way to the Python it runs, where that is below /tmp, as in a
    # checkout there); its /dev/shm holds the path to its own directory (connection file,
    # sockets), nothing else.
    interpreter = [Path(sys.prefix), Path(sys.base_prefix)]
    below_tmp = {p.relative_to("/tmp").parts[0] for p in interpreter if p.is_relative_to("/tmp")}
    assert isinstance(verdict["tmp"], list) and set(verdict["tmp"]) == below_tmp
    assert isinstance(verdict["shm"], list) and len(verdict["shm"]) == 1


@pytest_twisted.ensureDeferred
async def test_kernels_do_not_share_tmp_or_home(sandboxed: Server) -> None:
    assert (await attack(sandboxed, "leave_file", "left-by-the-attacker"))["succeeded"]
    text = await run(
        sandboxed,
        "matrix:!victim:example.org",
        f"{ATTACKS}\nprint(find_file('left-by-the-attacker'))",
    )
    assert "'succeeded': False" in text, text


@pytest_twisted.ensureDeferred
async def test_a_fork_bomb_stops_at_the_kernel_limit(sandboxed: Server) -> None:
    require_cgroups(sandboxed)
    verdict = await attack(sandboxed, "fork_bomb", 500)
    assert verdict["succeeded"] is False, verdict
    assert isinstance(verdict["started"], int) and verdict["started"] < PROCESSES
    assert "alive" in await run(sandboxed, "matrix:!victim:example.org", "print('alive')")


@pytest_twisted.ensureDeferred
async def test_the_sockets_directory_cannot_fill_the_host(
    sandboxed: Server, unsandboxed: Server
) -> None:
    """The one host directory a kernel may write to is in memory, charged to its cgroup."""
    require_cgroups(sandboxed)
    for server, expected in ((sandboxed, False), (unsandboxed, True)):
        verdict = await attack(server, "fill_storage", 3 * MEMORY_MB, may_die=True)
        assert verdict["succeeded"] is expected, (server.mode, verdict)
    assert "alive" in await run(sandboxed, "matrix:!victim:example.org", "print('alive')")
    # Restarted, the attacker's kernel finds its directory empty: nothing piles up in memory.
    verdict = await attack(sandboxed, "list_directory", sandboxed_sockets(sandboxed))
    assert isinstance(verdict["entries"], list)
    assert all(entry.startswith("kernel-") for entry in verdict["entries"]), verdict


def require_cgroups(server: Server) -> None:
    if server.sandbox.cgroups is None:
        pytest.skip(
            "no cgroups here: kernels have rlimits only, and the process count is shared by "
            "every sandbox of the user (docs/kernels.md)"
        )


def sandboxed_sockets(server: Server) -> str:
    """The attacker's sockets directory (the attacker's kernel is the only other one)."""
    victim = Path(server.victim_connection_file).parent
    [attacker] = [d for d in victim.parent.iterdir() if d != victim]
    return str(attacker / "sockets")


@pytest_twisted.ensureDeferred
async def test_a_memory_hog_stops_at_the_kernel_limit(sandboxed: Server) -> None:
    # Killed at its cgroup's limit, or refused by the address-space limit without cgroups.
    verdict = await attack(sandboxed, "memory_hog", 4 * MEMORY_MB, may_die=True)
    assert verdict["succeeded"] is False, verdict
    assert "alive" in await run(sandboxed, "matrix:!victim:example.org", "print('alive')")


# The same attacks typed into a chat (short enough for one Discord message).
FROM_CHAT: dict[str, Callable[[Server], str]] = {
    "the bot password": lambda s: (
        "import os\n"
        "def grab(path):\n"
        "    try:\n"
        "        return open(path, 'rb').read()\n"
        "    except OSError:\n"
        "        return b''\n"
        f"secret = {PASSWORD!r}\n"
        "procs = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "hits = [p for p in procs if secret.encode() in grab(f'/proc/{p}/environ')]\n"
        "print('GOT IT' if hits or secret in str(os.environ) else 'NOTHING')"
    ),
    "another room's kernel": lambda s: (
        "import json\n"
        "from jupyter_client import BlockingKernelClient\n"
        "try:\n"
        f"    info = json.load(open({s.victim_connection_file!r}))\n"
        "except OSError as e:\n"
        "    print('NOTHING', e.strerror)\n"
        "else:\n"
        "    c = BlockingKernelClient()\n"
        "    c.load_connection_info(info)\n"
        "    c.start_channels()\n"
        "    c.wait_for_ready(timeout=20)\n"
        "    out = []\n"
        "    hook = lambda m: out.append(m['content'].get('text', ''))\n"
        "    c.execute_interactive('print(secret)', timeout=20, output_hook=hook)\n"
        f"    print('GOT IT' if {VICTIM_SECRET!r} in ''.join(out) else 'NOTHING')"
    ),
}


async def chat_reply(server: Server, code: str) -> str:
    """What jupybot answers, through its Discord adapter, to `run` with C{code}."""
    world = await start_world(server.part.manager)
    channel = world.discord.dm_channel(world.alice)
    try:
        assert len(code) < 1900
        await world.discord.user_says(world.alice, channel, f"run\n```python\n{code}\n```")
        [reply] = await world.discord.wait_for(
            lambda: [
                m["content"]
                for m in world.discord.bot_messages(channel["id"])
                if "GOT IT" in m["content"] or "NOTHING" in m["content"]
            ],
            within=90,
        )
        return str(reply)
    finally:
        await stop_world(world)
        await await_deferred(server.part.manager.stop(f"discord:{channel['id']}"))


@pytest.mark.parametrize("target", list(FROM_CHAT))
@asyncio_test
async def test_from_a_chat_room_too(target: str, sandboxed: Server, unsandboxed: Server) -> None:
    """Through jupybot's Discord adapter (real discord.py, a fake Discord) and its `run`."""
    for server, expected in ((sandboxed, "NOTHING"), (unsandboxed, "GOT IT")):
        reply = await chat_reply(server, FROM_CHAT[target](server))
        assert expected in reply, (server.mode, target, reply)
