"""A real `twistd jupybot` started, killed and stopped as an operator (or a crash) would: /ping
follows the embedded gateway's death and return, SIGTERM ends every visitor's process while a
browser is connected, a SIGKILLed server's gateway and kernels die with it, and the next start
kills a gateway that outlived its server anyway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from jupybot.kernels import _leftovers
from jupybot.kernels.embedded import WORK_PREFIX
from jupybot.kernels.part import GATEWAY_RECORD
from tests.harness import JupybotProcess, descendants, jupybot_config
from tests.kernels.kernel_python import requires_kernel_python
from tests.matrix.user import asyncio_test
from tests.terminal.conftest import RawClient, raw

pytestmark = pytest.mark.peers

# Kernels unsandboxed: here the sandbox user may not read the venv's Python, and a kernel outside
# a sandbox is the harder case (it does not die with its gateway).
EMBEDDED_UNSANDBOXED = "sandbox: {mode: none}\nterminal: {enabled: false}\n"

# Ignores SIGHUP and SIGTERM, and so do its child, its grandchild and a grandchild that left its
# session with setsid(): only the SIGKILL of the documented sequence ends them.
STUBBORN = """
gateway: {url: 'http://127.0.0.1:1'}
programs:
  - name: stubborn
    argv:
      - sh
      - -c
      - |
        trap '' HUP TERM
        ( sleep 1000 & setsid sh -c 'sleep 1000 & wait' & wait ) &
        echo ready
        wait
"""


def ping(base_url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(base_url + "/ping", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ping_until(base_url: str, code: int, timeout: float) -> dict[str, object]:
    """/ping's body once it answers C{code} (polled: /ping is the thing watched)."""
    deadline = time.monotonic() + timeout
    while True:
        answer, body = ping(base_url)
        if answer == code:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/ping did not answer {code} within {timeout}s: {body}")
        time.sleep(0.2)


def gateway_pid(server: JupybotProcess) -> int:
    (pid,) = [pid for pid in descendants(server.pid) if b"kernel_gateway" in command_of(pid)]
    return pid


def alive(pids: list[int]) -> list[int]:
    """The processes of C{pids} still running (zombies are dead)."""
    running = []
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] != "Z":
                running.append(pid)
    return running


def gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(pids)


def descendants_at_least(pid: int, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(found := descendants(pid)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{pid} has {len(found)} processes below it, not {count}")
        time.sleep(0.05)
    return found


def kill_all(pids: list[int]) -> None:
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[JupybotProcess]:
    server = JupybotProcess(jupybot_config(tmp_path, EMBEDDED_UNSANDBOXED), tmp_path)
    try:
        server.wait_listening(120)
        yield server
    finally:
        server.stop()


def test_the_site_listens_once_the_kernels_run_and_ping_says_ok(
    embedded: JupybotProcess,
) -> None:
    listening = next(i for i, line in enumerate(embedded.lines) if "web: listening" in line)
    assert any("kernels: running" in line for line in embedded.lines[:listening])
    code, body = ping(embedded.base_url)
    assert code == 200 and body["status"] == "ok", body


def test_a_killed_gateway_shows_in_ping_until_it_is_back(embedded: JupybotProcess) -> None:
    ping_until(embedded.base_url, 200, 30)
    gateway, *kernels = start_kernel(embedded)
    os.kill(gateway, signal.SIGKILL)
    embedded.wait_for("the embedded Kernel Gateway stopped")
    code, body = ping(embedded.base_url)
    assert code == 503 and body["status"] == "degraded", body
    assert str(body["services"]["kernels"]).startswith("down: ")  # type: ignore[index]
    embedded.wait_for_count("embedded Kernel Gateway ready at", 2, timeout=90)
    body = ping_until(embedded.base_url, 200, 30)
    assert body["services"]["kernels"] == "running"  # type: ignore[index]
    # Its kernel (unsandboxed here: not in a PID namespace that died with it) noticed its
    # parent was gone and ended (ipykernel's parent poller, JPY_PARENT_PID).
    assert gone_within(kernels, 10) == []


def is_gateway_or_kernel(pid: int) -> bool:
    command = command_of(pid)
    return b"kernel_gateway" in command or b"ipykernel" in command


def start_kernel(server: JupybotProcess) -> list[int]:
    """A kernel started on the embedded gateway through its API (as a chat command would);
    the gateway's process tree once the kernel runs."""
    url = server.wait_for(r"embedded Kernel Gateway ready at (http://\S+)").group(1)
    gateway = gateway_pid(server)
    environ = Path(f"/proc/{gateway}/environ").read_bytes().split(b"\0")
    token = next(v.split(b"=", 1)[1] for v in environ if v.startswith(b"KG_AUTH_TOKEN="))
    request = urllib.request.Request(
        url + "/api/kernels",
        data=b'{"name": "python3"}',
        headers={"Authorization": f"token {token.decode()}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201
    deadline = time.monotonic() + 30
    while not any(b"ipykernel" in command_of(pid) for pid in descendants(gateway)):
        assert time.monotonic() < deadline, "the kernel's process did not appear"
        time.sleep(0.05)
    return [gateway, *descendants(gateway)]


def command_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize(
    "sandbox", ["none", pytest.param("bubblewrap", marks=requires_kernel_python)]
)
def test_a_sigkilled_servers_gateway_and_kernels_die_with_it(tmp_path: Path, sandbox: str) -> None:
    """No restart needed: the gateway dies with jupybot (its parent-death signal). Unsandboxed,
    its kernel, its child, ends once it is gone; sandboxed, its bubblewrap dies with the gateway
    (--die-with-parent) and takes its PID namespace along."""
    config = jupybot_config(
        tmp_path, f"sandbox: {{mode: {sandbox}}}\nterminal: {{enabled: false}}\n"
    )
    server = JupybotProcess(config, tmp_path)
    tree: list[int] = []
    try:
        server.wait_listening(120)
        tree = start_kernel(server)
        # The tree may hold a helper that ends on its own (the sandbox's set-up).
        assert len([pid for pid in tree if is_gateway_or_kernel(pid)]) >= 2, tree
    finally:
        server.signal(signal.SIGKILL)
        server.wait()
    try:
        assert gone_within(tree, 10) == []
    finally:
        kill_all(tree)


def test_the_next_start_kills_a_gateway_that_outlived_its_server(tmp_path: Path) -> None:
    """A gateway the record names, still running (its server was killed as it spawned it, or
    was an older jupybot), is killed with everything below it by the next start."""
    left = subprocess.Popen(["sh", "-c", "sleep 300 & wait"])  # the gateway and a kernel
    tree = [left.pid, *descendants_at_least(left.pid, 1)]
    work = tmp_path / f"{WORK_PREFIX}left"
    work.mkdir()
    state = tmp_path / "var"
    state.mkdir(mode=0o700)
    _leftovers.write_record(state / GATEWAY_RECORD, left.pid, work)
    server = JupybotProcess(jupybot_config(tmp_path, EMBEDDED_UNSANDBOXED), tmp_path)
    try:
        server.wait_listening(120)
        server.wait_for("killed the embedded Kernel Gateway a previous jupybot left")
        assert gone_within(tree, 10) == []
        assert not work.exists()
        assert ping(server.base_url)[0] == 200
    finally:
        server.stop()
        kill_all(tree)
        left.wait()


@pytest.mark.parametrize("mode", ["none", "bubblewrap"])
@asyncio_test
async def test_sigterm_with_browsers_connected_ends_every_process_of_every_session(
    tmp_path: Path, mode: str
) -> None:
    config = jupybot_config(tmp_path, STUBBORN + f"sandbox: {{mode: {mode}}}\n")
    server = JupybotProcess(config, tmp_path)
    processes: list[int] = []
    try:
        await asyncio.to_thread(server.wait_listening, 60)
        async with aiohttp.ClientSession() as session:
            clients: list[RawClient] = []
            for _ in range(2):
                client = await raw(session, server)
                await client.hello(program="stubborn", cols=80, rows=24)
                await client.until_output(b"ready")
                clients.append(client)
            # Each session: its shell, a subshell, two sleeps and the setsid() shell (started
            # in the background: counted until all are there).
            processes = await asyncio.to_thread(descendants_at_least, server.pid, 10)
            server.signal(signal.SIGTERM)
            for client in clients:
                await client.until_closed()
                assert client.ws.close_code == 1001
        assert await asyncio.to_thread(server.wait, 30) == -signal.SIGTERM
        assert "did not stop cleanly" not in server.output()
        assert alive(processes) == [], server.output()
    finally:
        server.stop()
        kill_all(processes)
