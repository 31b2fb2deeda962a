"""Running sandboxed kernels in tests as jupybot runs them: whether this run's Python can run
them (the sandbox user must be able to read it: whatever folder it is in, as jupybot shows it
through its view, but not a virtualenv that is itself closed to others), and jupybot's umask
for the gateway to inherit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox.kernels import interpreter_paths, unreachable
from jupybot.sandbox.sandbox import sandbox_user_ids
from jupybot.sandbox.view import blocked_folder
from jupybot.state import PRIVATE_UMASK
from tests.harness import ROOT


@contextmanager
def jupybot_umask() -> Iterator[None]:
    """The umask jupybot runs with (077): start the embedded gateway in this, so that it and
    its kernels' directories are made as in production."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def kernel_python_problem() -> str | None:
    """Why the sandbox user cannot run this Python, or None."""
    if os.geteuid() != 0:
        return None  # the sandbox runs as the tests' own user
    uid, gid = sandbox_user_ids(SandboxConfig().user)
    for path in interpreter_paths((sys.prefix, sys.base_prefix)):
        real = os.path.realpath(path)
        if blocked_folder(real) is not None:
            # jupybot shows it through its view (jupybot/sandbox/view.py), whatever folder it
            # is in: only the path's own permissions count.
            info = os.stat(real)
            blocked = None if info.st_mode & 0o005 == 0o005 else f"{real} is closed to others"
        else:
            blocked = unreachable(path, uid, gid)
        if blocked is not None:
            return (
                f"the sandbox user cannot read this Python at {path} ({blocked}): rebuild the "
                "virtualenv from the system's Python (make clean setup)"
            )
    return None


# Sandboxed kernels need a Python the sandbox user can read; jupybot refuses to start them
# otherwise (tests/sandbox/test_kernel_sandbox.py checks that refusal).
requires_kernel_python = pytest.mark.skipif(
    kernel_python_problem() is not None, reason=kernel_python_problem() or ""
)


def make_venv(venv: Path) -> Path:
    """A virtualenv at C{venv} from the system's Python, without pip (a tenth of a second),
    with this run's packages and checkout through a .pth."""
    python = os.path.join(sys.base_prefix, "bin", "python3")
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    [site] = (venv / "lib").glob("python3.*/site-packages")
    [ours] = Path(sys.prefix, "lib").glob("python3.*/site-packages")
    (site / "jupybot-tests.pth").write_text(f"{ours}\n{ROOT}\n")
    (site / "jupybot-tests.pth").chmod(0o644)
    return venv
