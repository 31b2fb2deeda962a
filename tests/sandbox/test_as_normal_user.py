"""jupybot run as a normal user (as the docs advise): no setpriv, no cgroups of its own, the
sandbox's user namespace maps that user to uid 1000. The attacks of attacks.py must still fail.

Run as root, the test becomes `nobody` for a child Python that builds the sandbox and runs the
attacks in it, so it needs an interpreter `nobody` can read (make setup builds .venv from
Debian's Python for that reason); tests/nobody.py shows that child this checkout wherever it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.harness import ROOT
from tests.nobody import BECOME_NOBODY, as_nobody, readable_by_nobody

ATTACKS = Path(__file__).with_name("attacks.py")

DRIVER = """
import json, sys
from twisted.internet import asyncioreactor
asyncioreactor.install()
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from jupybot.config.sandbox import SandboxConfig
from jupybot.config.terminal import ProgramConfig, TerminalConfig
from jupybot.sandbox import Sandbox
from jupybot.terminal import TerminalSessions

attacks_source, secret_file, marker, server_pid = sys.argv[1:5]
sandbox = Sandbox(SandboxConfig())
sandbox.prepare()
verdicts = {"limits": sandbox.describe()}

class Viewer:
    def __init__(self): self.data, self.end = bytearray(), Deferred()
    def output(self, data): self.data += data
    def ended(self, status): self.end.callback(status)
    def stopped(self, reason, message): pass

async def main():
    for name, *args in (
        ("environ", marker), ("read", secret_file, marker), ("processes", server_pid),
        ("signal", server_pid), ("write_outside", secret_file.rsplit("/", 1)[0]),
    ):
        program = ProgramConfig(name="a", title="a", description="",
                                argv=("python3", "-c", attacks_source, name, *args))
        sessions = TerminalSessions(reactor, TerminalConfig(), {"a": program}, sandbox)
        viewer = Viewer()
        sessions.open("a", 200, 50, "127.0.0.1", viewer)
        await viewer.end
        lines = [l for l in viewer.data.decode().splitlines() if l.startswith("{")]
        verdicts[name] = json.loads(lines[-1])["succeeded"] if lines else viewer.data.decode()

def finish(_):
    sandbox.close()
    print(json.dumps(verdicts))
    reactor.stop()

reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()).addBoth(finish))
reactor.run()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_the_sandbox_holds_when_jupybot_is_not_root() -> None:
    interpreter = Path(sys.base_prefix)
    if not readable_by_nobody(interpreter):
        pytest.skip(f"{interpreter} is not readable by nobody")
    with tempfile.TemporaryDirectory() as folder:
        Path(folder).chmod(0o755)
        secret = Path(folder) / "config.yml"
        secret.write_text("token: normal-user-secret-51f0\n")
        secret.chmod(0o644)
        # jupybot's stand-in, run by the same user as jupybot: its environment holds a secret.
        server = subprocess.Popen(
            ["setpriv", *BECOME_NOBODY, "sleep", "300"],
            env={"JUPYBOT_SECRET": "normal-user-secret-51f0"},
        )
        try:
            result = subprocess.run(
                as_nobody(
                    [
                        sys.executable,
                        "-c",
                        DRIVER,
                        ATTACKS.read_text(),
                        str(secret),
                        "normal-user-secret-51f0",
                        str(server.pid),
                    ]
                ),
                capture_output=True,
                text=True,
                timeout=120,
                cwd=folder,
                env={"PATH": os.environ["PATH"], "HOME": folder, "PYTHONPATH": str(ROOT)},
                check=False,
            )
        finally:
            server.kill()
            server.wait()
    assert result.returncode == 0, result.stderr
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdicts.pop("limits").startswith("bubblewrap as uid 65534; limits: rlimits only")
    assert verdicts == dict.fromkeys(verdicts, False), verdicts
