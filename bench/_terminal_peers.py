"""What users run instead of jupybot's terminal, measured by bench/terminal.py in the same run.

- wetty (npm; Node.js, node-pty, socket.io): the same ``head -c`` command, read by a socket.io
  client that commits what it read as wetty's page does (its flow control).
- The forwarding floor: socat copying the program's PTY to a TCP socket, read by a plain
  client. Any server that forwards a PTY pays at least this on this machine.

Both are installed by scripts/install-bench-peers (called when missing).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp

from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
WETTY = ROOT / ".cache" / "bench-peers" / "node_modules" / ".bin" / "wetty"
# wetty's page commits every 512 KB it has written (wetty/build/client: flowcontrol).
WETTY_COMMIT_EVERY = 512 * 1024


def ensure_installed() -> None:
    if not WETTY.exists() or shutil.which("socat") is None:
        subprocess.run([str(ROOT / "scripts" / "install-bench-peers")], check=True)


async def through_wetty(http: aiohttp.ClientSession, megabytes: int) -> float:
    """MB/s of ``head -c`` through wetty. wetty runs a command itself only as root on a local
    address (otherwise it logs in over ssh): the bench runs as root here, as CI does."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        str(WETTY),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--command",
        f"head -c {megabytes}M /dev/zero",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _line_with(server.stdout, b"Server started")
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        async with http.ws_connect(url, max_msg_size=0) as ws:
            assert (await ws.receive_str()).startswith("0")  # engine.io open
            await ws.send_str("40")  # socket.io connect to the default namespace
            total = uncommitted = 0
            started = time.perf_counter()
            async for message in ws:
                packet = message.data
                if packet == "2":  # engine.io ping
                    await ws.send_str("3")
                    continue
                if not packet.startswith("42"):
                    continue
                event, *args = json.loads(packet[2:])
                if event == "data":
                    total += len(args[0])
                    uncommitted += len(args[0])
                    if uncommitted >= WETTY_COMMIT_EVERY:
                        await ws.send_str("42" + json.dumps(["commit", uncommitted]))
                        uncommitted = 0
                elif event == "logout":
                    break
            return round(total / (time.perf_counter() - started) / 1e6, 1)
    finally:
        server.terminate()
        await server.wait()


async def through_forward_floor(megabytes: int) -> float:
    """MB/s of ``head -c`` on a PTY that socat copies to a TCP socket, read as fast as it comes.

    The PTY keeps the terminal's default modes, as jupybot's sessions and the other baselines
    do: in raw mode (no output processing) the writer alone costs half as much per MB, which
    made this floor a different, easier race (3.4 against 1.7 ms of ``head`` per MB here)."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        "socat",
        "-d",
        "-d",
        "-b65536",
        f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
        f"EXEC:head -c {megabytes}M /dev/zero,pty",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _line_with(server.stderr, b"listening on")
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        total = 0
        started = time.perf_counter()
        while chunk := await reader.read(65536):
            total += len(chunk)
        elapsed = time.perf_counter() - started
        writer.close()
        return round(total / elapsed / 1e6, 1)
    finally:
        if server.returncode is None:
            server.terminate()
        await server.wait()


async def _line_with(stream: asyncio.StreamReader | None, wanted: bytes) -> None:
    """Read C{stream} until a line holds C{wanted} (a peer saying it listens), within 30 s."""
    assert stream is not None

    async def read() -> None:
        while wanted not in (line := await stream.readline()):
            if not line:
                raise RuntimeError(f"the peer ended before saying {wanted!r}")

    await asyncio.wait_for(read(), 30)


def sandbox_teardown_floor(count: int) -> float:
    """Seconds to end C{count} idle sandboxed ``cat`` sessions without jupybot: the same
    bubblewrap launches (cgroups included) on PTYs of their own, all SIGKILLed at once, until
    every one is reaped, its PTY closed and its cgroups removed. The kernel's share of ending
    sessions, which no server can go below on this machine."""
    import os
    import pty
    import signal

    from jupybot.config.sandbox import SandboxConfig
    from jupybot.sandbox import Sandbox, SandboxProfile

    sandbox = Sandbox(SandboxConfig())
    sandbox.prepare()
    profile = SandboxProfile(argv=("/usr/bin/setsid", "--ctty", "/usr/bin/cat"))
    running = []
    try:
        for n in range(count):
            launch = sandbox.launch(profile, name=f"floor-{os.getpid()}-{n}")
            master, slave = pty.openpty()
            child = subprocess.Popen(
                launch.argv, env=launch.env, stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True,
            )  # fmt: skip
            os.close(slave)
            running.append((child, master, launch))
        # Every sandbox is up once its cat reads the terminal: one line echoed back.
        for _, master, _ in running:
            os.write(master, b"up\n")
            seen = b""
            while b"up\r\nup" not in seen:
                seen += os.read(master, 1024)
        started = time.perf_counter()
        for child, _, _ in running:
            child.send_signal(signal.SIGKILL)
        for child, master, launch in running:
            child.wait()
            os.close(master)
            if launch.cgroup is not None:
                while not launch.cgroup.remove():
                    time.sleep(0.005)
        return round(time.perf_counter() - started, 2)
    finally:
        sandbox.close()
