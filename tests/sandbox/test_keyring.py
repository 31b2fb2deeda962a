"""No visitor reads another's key, or jupybot's (issue 24): jupybot started inside a session
keyring of its own, as systemd starts a service (``KeyringMode=private``) and as a login through
pam_keyinit has one. Every sandbox inherits that keyring; the syscall filter refuses the three
calls that reach it (add_key, keyctl, request_key), and /proc/keys, which lists the keys of
that keyring by name, is covered inside.

A child Python stands for jupybot: it joins a fresh session keyring, adds a key of its own,
then runs one visitor's program that plants a key and, after it ended, the next visitor's
program that looks for both. With ``sandbox.seccomp: none`` the next visitor reads both: the
test fails with the protection switched off. As root, and as a normal user (``nobody``), where
the rest of the filter's probes (test_syscall_filter.py) are made too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT
from tests.nobody import as_nobody, readable_by_nobody
from tests.sandbox.test_syscall_filter import FILTERED, UNFILTERED

SURFACE = Path(__file__).with_name("surface.py")

DRIVER = """
import ctypes, json, subprocess, sys
from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Sandbox, SandboxProfile

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# KEYCTL_JOIN_SESSION_KEYRING with no name: a new anonymous session keyring, as systemd gives.
assert libc.syscall(250, 1, None) >= 0, ctypes.get_errno()
# A key of jupybot's own in it (KEY_SPEC_SESSION_KEYRING).
assert libc.syscall(248, b"user", b"jupybot-own-key", b"jupybot-own-payload", 19, -3) >= 0

surface, seccomp, tag = sys.argv[1:4]
sandbox = Sandbox(SandboxConfig(seccomp=seccomp))
sandbox.prepare()

def visitor(number, *call):
    launch = sandbox.launch(SandboxProfile(argv=("python3", "-c", surface, *call)), f"{tag}-{number}")
    try:
        result = subprocess.run(launch.argv, env=launch.env, capture_output=True, text=True, timeout=60)
    finally:
        if launch.cgroup is not None:
            launch.cgroup.kill_all()
            launch.cgroup.remove()
    lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else result.stdout + result.stderr

verdicts = {
    "planted": visitor(1, "plant_key", "visitor-secret", "the-first-visitors-payload"),
    "next_visitor": visitor(2, "find_key", "visitor-secret", "the-first-visitors-payload"),
    "jupybots_key": visitor(3, "find_key", "jupybot-own-key", "jupybot-own-payload"),
    "surface": visitor(4, "kernel_surface"),
}
sandbox.close()
print(json.dumps(verdicts))
"""


def keyring_verdicts(seccomp: str, as_a_normal_user: bool) -> dict[str, Any]:
    argv = [sys.executable, "-c", DRIVER, SURFACE.read_text(), seccomp, f"keys-{seccomp}"]
    result = subprocess.run(
        as_nobody(argv) if as_a_normal_user else argv,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": "/", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    verdicts: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return verdicts


USERS = [
    pytest.param(False, id="as-root" if os.geteuid() == 0 else "as-this-user"),
    pytest.param(
        True,
        id="as-a-normal-user",
        marks=pytest.mark.skipif(
            os.geteuid() != 0 or not readable_by_nobody(Path(sys.base_prefix)),
            reason="needs root to become nobody, and a Python nobody can read",
        ),
    ),
]


@pytest.mark.parametrize("as_a_normal_user", USERS)
def test_no_visitor_reads_a_key_of_another_or_of_jupybot(as_a_normal_user: bool) -> None:
    contained = keyring_verdicts("default", as_a_normal_user)
    assert contained["planted"] == {"succeeded": False, "error": "EPERM"}, contained
    for found in (contained["next_visitor"], contained["jupybots_key"]):
        assert found["succeeded"] is False and found["search_error"] == "EPERM", contained
    # Without the filter, jupybot's session keyring is every sandbox's.
    exposed = keyring_verdicts("none", as_a_normal_user)
    assert exposed["planted"]["succeeded"] is True, exposed
    assert exposed["next_visitor"]["read"] is True, exposed
    assert exposed["jupybots_key"]["read"] is True, exposed
    # The filter's other refusals, whoever jupybot runs as (the terminal probes make a
    # terminal of their own: this sandbox has none).
    assert contained["surface"] == {"seccomp": "2", "calls": FILTERED}, contained
    assert exposed["surface"] == {"seccomp": "0", "calls": UNFILTERED}, exposed
