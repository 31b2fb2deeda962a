"""An unsandboxed program does not outlive the process that started it (the embedded gateway
killed under its kernels, or jupybot under its sessions)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys

START_AND_WAIT = """
import subprocess, sys, time
from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Sandbox, SandboxProfile

sandbox = Sandbox(SandboxConfig(mode="none"))
sandbox.prepare()
launch = sandbox.launch(SandboxProfile(argv=("/bin/sleep", "600")), name=None)
child = subprocess.Popen(launch.argv, env=launch.env)
# The parent-death signal is set by setpriv before it execs the rest: once the program itself
# runs, it is in place (killed earlier, the parent would die before setpriv could set it).
while open(f"/proc/{child.pid}/comm").read().strip() != "sleep":
    time.sleep(0.001)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_an_unsandboxed_program_dies_with_its_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", START_AND_WAIT], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    program = int(parent.stdout.readline())
    watch = os.pidfd_open(program)
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # A pidfd becomes readable when its process ends.
        readable, _, _ = select.select([watch], [], [], 30)
        assert readable, "the program outlived the process that started it"
    finally:
        os.close(watch)
        with contextlib.suppress(ProcessLookupError):
            os.kill(program, signal.SIGKILL)
