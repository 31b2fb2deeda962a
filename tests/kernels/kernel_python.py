"""Running sandboxed kernels in tests as jupybot runs them: whether this run's Python can run
them (the sandbox user must be able to read it: a virtualenv made from a Python under /root
cannot be, when the tests run as root), and jupybot's umask for the gateway to inherit."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox.kernels import interpreter_paths, unreachable
from jupybot.sandbox.sandbox import sandbox_user_ids
from jupybot.state import PRIVATE_UMASK


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
