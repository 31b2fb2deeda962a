"""The embedded Kernel Gateway: jupybot's own child process when no gateway.url is configured,
with its kernels in the sandbox."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import KernelsPart, embedded
from jupybot.kernels.embedded import EmbeddedGateway
from jupybot.kernels.part import embedded_kernel_plan
from jupybot.sandbox import Sandbox
from jupybot.state import StateDirectory
from tests.harness import descendants
from tests.kernels.kernel_python import jupybot_umask, requires_kernel_python
from tests.kernels.listener import RecordingListener

from .test_gateway import kernel_forgotten, timeboxed

pytestmark = requires_kernel_python


@pytest_twisted.async_yield_fixture
async def part(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[KernelsPart]:
    state = StateDirectory(tmp_path / "var")
    state.ensure()
    part = KernelsPart(GatewayConfig(url=None, token=None), reactor, state, sandbox)
    with jupybot_umask():
        part.startService()
    yield part
    if part.running:
        await part.stopService()


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def still_alive_after(pids: list[int], seconds: float) -> list[int]:
    """The processes of C{pids} left after waiting up to C{seconds} for them to end. (A
    sandbox's inner bubblewrap can outlive the outer one by a moment, as an orphan that the
    host's init reaps.)"""
    deadline = reactor.seconds() + seconds
    while alive(pids) and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.05)
    return alive(pids)


@pytest_twisted.ensureDeferred
async def test_runs_code_with_nothing_configured_and_stops_every_process(
    part: KernelsPart,
) -> None:
    listener = RecordingListener()
    result = await timeboxed(part.manager.execute("room", "print(6 * 7)", listener), 120)
    assert result.status == "ok" and listener.text() == "42\n"
    assert part.embedded is not None and part.embedded.pid is not None
    gateway_pid = part.embedded.pid
    processes = [gateway_pid, *descendants(gateway_pid)]
    assert len(processes) >= 2  # the gateway and the room's kernel
    await part.stopService()
    assert part.status == "stopped"
    assert await still_alive_after(processes, 10) == []


@pytest_twisted.ensureDeferred
async def test_a_crashed_gateway_is_restarted_and_rooms_get_a_new_kernel(
    part: KernelsPart,
) -> None:
    gone = kernel_forgotten(part.manager)
    await timeboxed(part.manager.execute("room", "x = 1", RecordingListener()), 120)
    assert part.embedded is not None and part.embedded.pid is not None
    old_url = part.embedded.url
    assert part.status == "running"
    restarted = part.embedded.next_ready()
    os.kill(part.embedded.pid, signal.SIGKILL)
    await timeboxed(gone, 30)  # the room's kernel is reported lost, not waited for
    # /ping's view: running, but down until the new gateway serves.
    assert part.status == "down: the embedded Kernel Gateway died and is restarting"
    assert await timeboxed(restarted, 60) == old_url
    assert part.status == "running"
    assert part.embedded.url == old_url  # same port: a configured client would still find it
    listener = RecordingListener()
    result = await timeboxed(part.manager.execute("room", "print('back')", listener), 120)
    assert result.status == "ok" and listener.text() == "back\n"


@pytest_twisted.ensureDeferred
async def test_kernel_network_gives_kernels_the_hosts_network(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """gateway.kernel_network: true (tests/sandbox/test_kernel_attacks.py: none by default)."""
    state = StateDirectory(tmp_path / "var")
    state.ensure()
    config = replace(GatewayConfig(url=None, token=None), kernel_network=True)
    part = KernelsPart(config, reactor, state, sandbox)
    with jupybot_umask():
        part.startService()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        try:
            listener = RecordingListener()
            code = (
                "import socket\n"
                f"socket.create_connection(('127.0.0.1', {port})).close()\n"
                "print('in')"
            )
            result = await timeboxed(part.manager.execute("room", code, listener), 120)
            assert result.status == "ok" and listener.text() == "in\n", listener.events
        finally:
            await part.stopService()


@pytest_twisted.ensureDeferred
async def test_the_token_goes_to_no_one_else_on_the_port_jupybot_chose(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone listening on the port jupybot chose for the gateway (taken between the choice
    and the gateway's bind, by a kernel with the host's network, say) gets no request, so never
    the token: jupybot asks only a port the gateway's own process listens on. The gateway,
    refused that port, is started again on another."""
    with socket.socket() as impostor:
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        impostor.setblocking(False)
        taken = impostor.getsockname()[1]
        choices = iter([taken])
        free_port = embedded._free_port
        monkeypatch.setattr(embedded, "_free_port", lambda: next(choices, 0) or free_port())
        plan = embedded_kernel_plan(sandbox, GatewayConfig(url=None, token=None))
        gateway = EmbeddedGateway(
            reactor,
            tmp_path / "runtime",
            on_ready=lambda *_: None,
            on_restart=lambda: None,
            restart_delay=lambda attempt: 0.1,
        )
        try:
            with jupybot_umask():
                url = await timeboxed(gateway.start(plan), 60)
            assert url.startswith("http://127.0.0.1:") and not url.endswith(f":{taken}")
            assert gateway.process.quick_deaths == 1  # the start refused the taken port
            # Nothing jupybot sent reached it. (A stray connection may: a client of an earlier
            # test retrying the port the kernel has since given the impostor.)
            assert gateway.token.encode() not in sent_to(impostor)
        finally:
            await gateway.stop()


def sent_to(listener: socket.socket) -> bytes:
    """Everything sent so far on the connections waiting at C{listener} (non-blocking)."""
    sent = b""
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return sent
        with connection:
            connection.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while data := connection.recv(65536):
                    sent += data


def test_a_port_counts_as_the_gateways_only_if_its_process_listens_there() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert embedded.listens_on(os.getpid(), "127.0.0.1", port)
        with subprocess.Popen(["sleep", "30"]) as other:
            try:
                assert not embedded.listens_on(other.pid, "127.0.0.1", port)
            finally:
                other.kill()
    assert not embedded.listens_on(os.getpid(), "127.0.0.1", port)


def test_a_listener_made_after_many_connections_is_found() -> None:
    """listens_on reads only the listening sockets' rows, which the kernel lists first."""
    with contextlib.ExitStack() as sockets:
        server = sockets.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        for _ in range(50):
            client = sockets.enter_context(socket.socket())
            client.connect(server.getsockname())
            sockets.enter_context(server.accept()[0])
        listening = sockets.enter_context(socket.socket())
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert embedded.listens_on(os.getpid(), "127.0.0.1", listening.getsockname()[1])
