"""A host whose hard open-file limit is below a program's own limit still runs programs."""

from __future__ import annotations

import subprocess
import sys

import pytest

TRY_A_PROGRAM = """
from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Sandbox, SandboxProfile

sandbox = Sandbox(SandboxConfig(mode="{mode}"))
sandbox.prepare()
profile = SandboxProfile(argv=("/bin/sh", "-c", "test $(ulimit -n) -le 256"))
print(sandbox.try_run(profile))
sandbox.close()
"""


@pytest.mark.parametrize("mode", ["bubblewrap", "none"])
def test_programs_run_under_a_hard_open_file_limit_below_their_own(mode: str) -> None:
    """Programs get at most 1024 files; under `ulimit -Hn 256` they get 256 rather than fail."""
    result = subprocess.run(
        ["prlimit", "--nofile=256:256", sys.executable, "-c", TRY_A_PROGRAM.format(mode=mode)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "None", result.stdout + result.stderr
