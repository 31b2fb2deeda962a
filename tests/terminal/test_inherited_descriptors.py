"""A program's PTY child closes every descriptor of jupybot it inherited, close-on-exec or not:
a stranger's program must not reach the server's sockets, files or other sessions' terminals."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Forks a child set up by each PTY transport's own _setupChild, with an inheritable descriptor
# open in the "server" (what close-on-exec would not close), and prints what the exec'd program
# holds.
CHILD = """
import os, pty, sys
from jupybot.terminal import pty as jupybot_pty

transport = object.__new__(getattr(jupybot_pty, sys.argv[1]))
leaked = os.open("/dev/null", os.O_RDONLY)
os.set_inheritable(leaked, True)
os.dup2(leaked, 200)
master, slave = pty.openpty()
pid = os.fork()
if pid == 0:
    transport._setupChild(master, slave)
    os.execv("/bin/ls", ["ls", "/proc/self/fd"])
os.close(slave)
seen = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
os.waitpid(pid, 0)
print(sorted(int(fd) for fd in seen.split()))
"""


@pytest.mark.parametrize("transport", ["_DrainingPtyProcess", "_SandboxPtyProcess"])
def test_the_program_holds_only_its_terminal(transport: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, transport], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    # 0-2: the terminal; 3: the folder ls is listing.
    assert result.stdout.strip() == "[0, 1, 2, 3]", result.stdout
