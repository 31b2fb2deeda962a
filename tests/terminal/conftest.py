"""A `twistd jupybot` with a catalogue of test programs, and a websocket client for it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import JupybotProcess, descendants, jupybot_config

PROGRAMS = """
programs:
  - {name: py, argv: [python3, -q]}
  - {name: sh, argv: [sh]}
  - {name: cat, argv: [cat]}
  - {name: flood, argv: ["yes"]}
  # Installed when the server starts, uninstalled before a visitor picks it.
  - {name: missing, argv: ["{bin}/game"], files: ["{bin}"]}
  # Misspelt in the catalogue: the others serve, /ping names it, visitors hear it is not there.
  - {name: broken, argv: ["{bin}/gmae"], files: ["{bin}"]}
  - name: sleepy
    argv: [cat]
    limits: {idle_seconds: 1}
  - name: hog
    argv: [python3, -c, "x = bytearray(200 * 1024 * 1024); print('allocated')"]
    limits: {memory_mb: 64}
  # Line mode's programs: the shipped demos' kind, and a curses one.
  - {name: bc, argv: [bc, -q]}
  - {name: quiz, argv: [python3, "{demos}/quiz.py"]}
  - name: curses
    argv:
      - python3
      - -c
      - |
        import curses

        def main(screen):
            screen.addstr(0, 0, "word? ")
            word = ""
            while True:
                key = screen.getch()
                if key not in (10, 13):
                    word += chr(key)
                    continue
                if word == "quit":
                    return
                screen.addstr(1, 0, f"hello {word}!")
                screen.clrtoeol()
                screen.move(0, 6)
                screen.clrtoeol()
                word = ""

        curses.wrapper(main)
  # Programs that pause between prints (a Node timer, Python's select with a timeout), and
  # Node's readline, which echoes a line ending in CR CR LF.
  - name: ticker
    argv:
      - node
      - -e
      - |
        const rl = require("readline").createInterface({input: process.stdin, output: process.stdout});
        const tick = (n, then) => n === 0 ? then() : setTimeout(() => { console.log("tick " + n); tick(n - 1, then); }, 300);
        const ask = () => rl.question("> ", (line) => { console.log("you said " + line); tick(3, ask); });
        tick(3, ask);
    # {node rlimits}
  # The Node demo shipped with jupybot, at the default limits (512 MB in a cgroup, no address
  # space limit: V8 could not start within 512 MB of address space).
  - name: guess
    argv: [node, "{demos}/guess.mjs"]
    # {node rlimits}
  - name: pauser
    argv:
      - python3
      - -c
      - |
        import select
        while True:
            line = input("> ")
            print("before", line, flush=True)
            select.select([], [], [], 1.2)
            print("after select", flush=True)
  # Reads its terminal in a thread of its own while its first thread waits for it, as the JVM
  # runs `main` (and Go, whichever thread its scheduler picks).
  - name: threaded
    argv:
      - python3
      - -c
      - |
        import threading

        def ask():
            while line := input("name? "):
                print("hello", line, flush=True)

        reader = threading.Thread(target=ask)
        reader.start()
        reader.join()
  # Input flow control: cat without the terminal's echo, and a program that never reads.
  - {name: quietcat, argv: [sh, -c, "stty -echo; echo ready; exec cat"]}
  # (A terminal in canonical mode would drop a line over 4096 bytes: in raw mode it fills.)
  - {name: deaf, argv: [sh, -c, "stty raw -echo; echo ready; exec sleep 1000"]}
  # Outlives SIGHUP and SIGTERM (its `sleep` does not): ends at the SIGKILL, 4 s after its
  # session expired.
  - name: stubborn
    argv: [sh, -c, "trap 'echo hup' HUP; trap 'echo term' TERM; echo ready; while :; do sleep 1000; done"]
terminal:
  max_sessions_per_ip: 100
  resume_seconds: 5
  window_kb: 64
  replay_kb: 256
"""

# A Java program as docs/terminal.md ("Java, Go and Node") gives it: compiled into the test's
# folder of programs where `javac` is installed.
GREET_JAVA = """\
import java.util.Scanner;

public class Greet {
    public static void main(String[] args) {
        Scanner in = new Scanner(System.in);
        System.out.print("Your name? ");
        System.out.flush();
        while (in.hasNextLine()) {
            String name = in.nextLine().trim();
            if (name.isEmpty()) break;
            System.out.println("Hello, " + name + "!");
            System.out.print("Your name? ");
            System.out.flush();
        }
    }
}
"""
JAVA_PROGRAM = """\
  - name: java
    argv: [java, -Xmx256m, "-XX:ActiveProcessorCount=1", -cp, "{bin}", Greet]
    files: ["{bin}"]
    limits: {address_space_mb: 2048}
"""
# Where rlimits are all there is (no cgroups: a normal user on cgroup v1), the memory limit is
# each process's address space, within which V8 cannot start: Node's programs get what
# config.yml gives the shipped demo (docs/terminal.md, "Java, Go and Node").
NODE_RLIMITS = "limits: {address_space_mb: 4096}"
# Whether a jupybot started now gets cgroups for its sandboxes: asked in a process of its own,
# which removes the groups it made (this one's may be in use by a sandbox of another test).
CGROUPS_PROBE = (
    "from jupybot.sandbox.cgroups import find_cgroups\n"
    "found = find_cgroups()\n"
    "if not isinstance(found, str):\n"
    "    found.close()\n"
    "print('none' if isinstance(found, str) else 'cgroups')\n"
)


def sandbox_has_cgroups() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", CGROUPS_PROBE], capture_output=True, text=True, check=True
    )
    return probe.stdout.strip() == "cgroups"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupybotProcess]:
    workdir = tmp_path_factory.mktemp("terminal")
    # Where the sandbox user may read it (pytest's folders are private to root).
    bin_dir = Path(tempfile.mkdtemp(prefix="jupybot-test-bin-"))
    bin_dir.chmod(0o755)
    game = bin_dir / "game"
    game.write_text("#!/bin/sh\necho game\n")
    game.chmod(0o755)
    programs = PROGRAMS
    if not sandbox_has_cgroups():
        programs = programs.replace("# {node rlimits}", NODE_RLIMITS)
    if shutil.which("javac"):
        (bin_dir / "Greet.java").write_text(GREET_JAVA)
        subprocess.run(["javac", "-d", str(bin_dir), str(bin_dir / "Greet.java")], check=True)
        (bin_dir / "Greet.class").chmod(0o644)
        programs = programs.replace("\nterminal:\n", "\n" + JAVA_PROGRAM + "terminal:\n", 1)
    programs = programs.replace("{bin}", str(bin_dir))
    process = JupybotProcess(jupybot_config(workdir, programs), workdir)
    try:
        process.wait_listening()
        process.wait_for("terminal: running")
        game.unlink()
        yield process
    finally:
        process.stop()
        shutil.rmtree(bin_dir)


def ws_url(server: JupybotProcess, path: str) -> str:
    return server.base_url.replace("http://", "ws://") + path


class RawClient:
    """The page's side of the raw protocol, as a test drives it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.output = bytearray()
        self.acknowledged = 0
        self.ready: dict[str, Any] = {}
        self.exit: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    async def hello(self, **hello: Any) -> None:
        await self.ws.send_str(json.dumps(hello))

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(b"\x00" + data)

    async def frame(self) -> aiohttp.WSMessage:
        """Receive one frame and record what it says; returns it."""
        message = await self.ws.receive(timeout=30)
        if message.type == aiohttp.WSMsgType.BINARY:
            kind, body = message.data[0], message.data[1:]
            if kind == 0x10:
                self.output += body
            elif kind == 0x11:
                self.ready = json.loads(body)
            elif kind == 0x12:
                self.exit = json.loads(body)
            elif kind == 0x13:
                self.error = json.loads(body)
        return message

    async def acknowledge(self) -> None:
        """Tell the server every byte of output so far was drawn, as the page does."""
        if len(self.output) > self.acknowledged:
            count, self.acknowledged = len(self.output) - self.acknowledged, len(self.output)
            await self.ws.send_bytes(b"\x02" + struct.pack("!I", count))

    async def until_output(self, needle: bytes, acknowledge: bool = False) -> None:
        while needle not in self.output:
            message = await self.frame()
            assert message.type == aiohttp.WSMsgType.BINARY, (message, bytes(self.output))
            if acknowledge:
                await self.acknowledge()

    async def until_closed(self) -> aiohttp.WSMessage:
        while True:
            message = await self.frame()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return message


async def raw(
    session: aiohttp.ClientSession, server: JupybotProcess, headers: dict[str, str] | None = None
) -> RawClient:
    ws = await session.ws_connect(ws_url(server, "/terminal/ws"), headers=headers)
    return RawClient(ws)


def started_program(server: JupybotProcess, others: set[int], name: str) -> int:
    """The pid of the program C{name} started since C{others}: the program itself, not the
    sandbox around it."""
    (pid,) = [
        pid
        for pid in set(descendants(server.pid)) - others
        if Path(f"/proc/{pid}/comm").read_text().strip() == name
    ]
    return pid


async def wait_gone(pids: list[int], within: float) -> None:
    """Wait until every process of C{pids} has ended, for at most C{within} seconds each."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def readable(ended: asyncio.Future[None] = ended) -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await asyncio.wait_for(ended, within)
        finally:
            loop.remove_reader(fd)
            os.close(fd)
