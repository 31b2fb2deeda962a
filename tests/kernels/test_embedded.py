"""The embedded Kernel Gateway: jupybot's own child process when no gateway.url is configured,
with its kernels in the sandbox."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
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
            # A stray client may have reset its connection already: nothing more to read there.
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                while data := connection.recv(65536):
                    sent += data


# Listens on a port of its own, says which, and waits for the end of its stdin.
LISTENER = (
    "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
    " print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


@contextlib.contextmanager
def listening_process(source: str = LISTENER) -> Iterator[tuple[int, int]]:
    """Another process listening on a port: its pid and the port."""
    with subprocess.Popen(
        [sys.executable, "-c", source], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        try:
            yield process.pid, int(process.stdout.readline())
        finally:
            process.stdin.close()


def test_a_port_counts_as_the_gateways_only_if_its_process_listens_there() -> None:
    with listening_process() as (gateway, port), subprocess.Popen(["sleep", "30"]) as other:
        try:
            assert embedded.listens_on(gateway, "127.0.0.1", port)
            assert not embedded.listens_on(other.pid, "127.0.0.1", port)
        finally:
            other.kill()
    assert not embedded.listens_on(gateway, "127.0.0.1", port)


def test_a_socket_jupybot_holds_itself_is_not_the_gateways() -> None:
    """The child jupybot forks holds jupybot's descriptors until it execs the gateway: were a
    listener on the chosen port one of them, the child would seem to listen there."""
    with socket.socket() as impostor:
        impostor.set_inheritable(True)
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        port = impostor.getsockname()[1]
        with subprocess.Popen(["sleep", "30"], close_fds=False) as child:
            try:
                assert f"socket:[{os.fstat(impostor.fileno()).st_ino}]" in {
                    os.readlink(f"/proc/{child.pid}/fd/{fd}")
                    for fd in os.listdir(f"/proc/{child.pid}/fd")
                }
                assert not embedded.listens_on(child.pid, "127.0.0.1", port)
            finally:
                child.kill()


def test_a_listener_made_after_many_connections_is_found() -> None:
    """listens_on reads only the listening sockets' rows, which the kernel lists first."""
    many_then_listen = (
        "import socket, sys; server = socket.socket(); server.bind(('127.0.0.1', 0));"
        " server.listen(64); clients = [socket.create_connection(server.getsockname())"
        " for _ in range(50)]; accepted = [server.accept()[0] for _ in range(50)];"
        + LISTENER.removeprefix("import socket, sys;")
    )
    with listening_process(many_then_listen) as (gateway, port):
        assert embedded.listens_on(gateway, "127.0.0.1", port)
