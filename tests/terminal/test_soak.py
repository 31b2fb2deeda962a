"""A year of visitors in a minute: a thousand sessions opened from many addresses (the loopback
range) and abandoned as a reload or a closed tab abandons them. Every slot, fd, process and most
of the memory must come back, and the next visitors must get in."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import aiohttp
import pytest

from jupybot.sandbox.uids import LOCKS
from tests.harness import JupybotProcess, descendants, jupybot_config, rss_kb
from tests.matrix.user import asyncio_test

# As root each sandbox leases a host uid from sandbox.uids, locked host-wide: the default range
# is every jupybot's here, and a bench's thousand idle sessions (or their sandboxes still
# leaving, left out at start) leave fewer than a batch needs: its visitors would be refused.
CONFIG = """
programs:
  - {name: cat, argv: [cat]}
  - {name: flood, argv: ["yes"]}
sandbox:
  uids: 72000-72999
terminal:
  max_sessions: 40
  max_sessions_per_ip: 1
  resume_seconds: 0.2
"""
TOTAL, AT_ONCE = 1000, 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupybotProcess]:
    workdir = tmp_path_factory.mktemp("soak")
    process = JupybotProcess(jupybot_config(workdir, CONFIG), workdir)
    try:
        process.wait_listening()
        process.wait_for("terminal: running")
        # The embedded gateway's warm kernel is among the server's processes: counted once it
        # started (on a busy host, as a normal user, it can start after the first visit).
        process.wait_for(r"kernels: warm pool holds 1 of 1", timeout=120)
        yield process
    finally:
        process.stop()


def address(n: int) -> str:
    return f"127.{1 + n // 62500}.{n // 250 % 250}.{1 + n % 250}"


async def visit(server: JupybotProcess, n: int, program: str) -> str:
    """Open a session from address C{n}, see its first output, walk away; the READY or ERROR."""
    url = server.base_url.replace("http://", "ws://") + "/terminal/ws"
    connector = aiohttp.TCPConnector(local_addr=(address(n), 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        ws = await http.ws_connect(url, origin=server.base_url)
        await ws.send_str(json.dumps({"program": program, "cols": 80, "rows": 24}))
        first = await ws.receive(timeout=30)
        if first.type != aiohttp.WSMsgType.BINARY or first.data[:1] != b"\x11":
            await ws.close()
            return f"refused: {first.data!r}"
        if program == "cat":
            await ws.send_bytes(b"\x00hello\n")
        while True:  # until the program's first output
            message = await ws.receive(timeout=30)
            if message.type == aiohttp.WSMsgType.BINARY and message.data[:1] == b"\x10":
                break
        # Gone without a word: like a closed tab, the connection just drops.
        ws._response.connection.transport.abort()  # type: ignore[union-attr]
        return "ready"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def settles(condition: Callable[[], bool], seconds: float = 30) -> bool:
    """Whether C{condition} holds within C{seconds}: for what /proc tells of and nothing
    announces (an fd closed, a process reaped), read again every 50 ms until then."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def left(pid: int) -> list[str]:
    """What runs below C{pid}, each as its command line: what a failed count names."""
    commands = []
    for child in descendants(pid):
        with suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            commands.append(f"{child}: {command.decode(errors='replace')[:120]}")
    return commands


ENDED = r"terminal: \w+ \(pid \d+\) (killed by|exited with)"


async def all_ended(server: JupybotProcess, sessions: int) -> None:
    """Until the server logged the end of C{sessions} sessions in all: each line comes once the
    program is reaped and its PTY closed, just before its slot is given back."""
    await asyncio.to_thread(server.wait_for_count, ENDED, sessions, 60)


def uid_locks(pid: int) -> set[Path]:
    """The locks of the sandbox uids (L{LOCKS}) that process C{pid} holds: one per sandbox of
    its own not gone yet."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):  # closed meanwhile
            target = Path(os.readlink(fd))
            if target.parent == LOCKS:
                held.add(target)
    return held


def uids_given_back(server: JupybotProcess, seconds: float = 60) -> None:
    """Until the server has given back the uid (and its lock fd) of each sandbox it ran: that
    comes only once the sandbox's cgroup is removed, in the server's thread pool, after its
    program's end was logged. Each lock it holds is waited for (flock wakes when it lets go)."""
    deadline = time.monotonic() + seconds
    kept = []
    for lock in uid_locks(server.pid):
        left = max(0.0, deadline - time.monotonic())
        wait = ["flock", "--shared", "--wait", f"{left:.2f}", str(lock), "true"]
        if subprocess.run(wait, check=False).returncode != 0:
            kept.append(lock.name)
    assert not kept, f"the server kept the sandbox uids {kept} {seconds} s after their end"


@asyncio_test
async def test_a_thousand_abandoned_sessions_cost_nobody_a_slot(server: JupybotProcess) -> None:
    assert await visit(server, 0, "cat") == "ready"  # warm up: code loaded, buffers made
    await all_ended(server, 1)
    await asyncio.to_thread(uids_given_back, server)
    fds, processes, rss = open_fds(server.pid), len(descendants(server.pid)), rss_kb(server.pid)
    outcomes: list[str] = []
    for start in range(1, TOTAL, AT_ONCE):
        batch = range(start, min(start + AT_ONCE, TOTAL))
        outcomes += await asyncio.gather(
            *(visit(server, n, "flood" if n % 2 else "cat") for n in batch)
        )
        await all_ended(server, min(start + AT_ONCE, TOTAL))
    refused = [o for o in outcomes if o != "ready"]
    assert not refused, f"{len(refused)} visitors were refused, e.g. {refused[0]}"
    await asyncio.to_thread(uids_given_back, server)
    # The server's own connections (its timers' clients) come and go: a count taken at one
    # instant can hold one of them. What leaked never comes back, so wait for the count to.
    assert await settles(lambda: open_fds(server.pid) <= fds), (open_fds(server.pid), fds)
    assert await settles(lambda: len(descendants(server.pid)) <= processes), left(server.pid)
    assert rss_kb(server.pid) - rss < 40_000  # a leak per session would be far more
    # The server-wide cap is whole again: a crowd as large as it gets in at once.
    crowd = await asyncio.gather(*(visit(server, 5000 + n, "cat") for n in range(AT_ONCE)))
    assert crowd == ["ready"] * AT_ONCE
