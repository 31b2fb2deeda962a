"""The terminal's pure parts: frames, replay, origins, sizes, the launch command line."""

from __future__ import annotations

import struct
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from jupybot.config.sandbox import SandboxConfig
from jupybot.config.terminal import ProgramConfig, ProgramLimits
from jupybot.sandbox import Sandbox
from jupybot.sandbox.profile import bubblewrap_args
from jupybot.terminal import wire
from jupybot.terminal.programs import (
    DEMOS_DIR,
    launch_program,
    program_problems,
    program_profile,
)
from jupybot.terminal.pty import ProgramNotFound, size_problem
from jupybot.terminal.sessions import ReplayBuffer
from jupybot.web.clients import Client, check_origin


def test_client_frames_decode() -> None:
    assert wire.decode_client_frame(b"\x00ls\n") == wire.Input(b"ls\n")
    assert wire.decode_client_frame(b"\x01" + struct.pack("!HH", 132, 43)) == wire.Resize(132, 43)
    assert wire.decode_client_frame(b"\x02" + struct.pack("!I", 70000)) == wire.Ack(70000)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty frame"),
        (b"\x01\x00", "resize frame carries 4 bytes"),
        (b"\x02abc", "ack frame carries 4 bytes"),
        (b"\x09", "unknown frame type 0x09"),
    ],
)
def test_bad_frames_say_what_is_wrong(payload: bytes, message: str) -> None:
    with pytest.raises(wire.BadFrame, match=message):
        wire.decode_client_frame(payload)


def test_hello_must_be_a_json_object() -> None:
    assert wire.decode_hello(b'{"program": "py"}') == {"program": "py"}
    for bad in (b"[1]", b"\xff\xfe", b"{"):
        with pytest.raises(wire.BadFrame, match="JSON object"):
            wire.decode_hello(bad)


def test_replay_keeps_the_tail_addressed_by_offset() -> None:
    replay = ReplayBuffer(capacity=10)
    replay.append(b"0123456789")
    replay.append(b"abcde")
    assert replay.total == 15
    assert replay.since(13) == b"de"
    assert replay.since(0) == b"56789abcde"  # older output is gone: the tail is what is left
    assert replay.since(15) == b""


def test_origins() -> None:
    page = Client("192.0.2.1", "http://jupybot.example:8080")
    assert check_origin(None, page, ()).allowed  # not a browser
    assert check_origin("http://jupybot.example:8080", page, ()).allowed
    assert not check_origin("https://evil.example", page, ()).allowed
    assert check_origin("https://me.example/", page, ("https://me.example",)).allowed


def test_sizes() -> None:
    assert size_problem(80, 24) is None and size_problem(1000, 500) is None
    assert size_problem(0, 24) == ("Terminal size must be 1-1000 columns and 1-500 rows, got 0x24.")
    assert size_problem(80, 501) and size_problem(True, 24) and size_problem("80", 24)


def test_unsandboxed_programs_run_under_prlimit_with_a_clean_environment() -> None:
    sandbox = Sandbox(SandboxConfig(mode="none"))
    sandbox.prepare()
    program = ProgramConfig(
        name="py",
        title="Python",
        description="",
        argv=("{python}", "-q"),
        env={"GAME": "on"},
        limits=ProgramLimits(cpu_seconds=5, memory_mb=100, processes=7, file_size_mb=1),
    )
    launch = launch_program(program, sandbox, "s1")
    assert not launch.contained
    # The parent-death signal first (the program dies with jupybot), then the limits.
    assert launch.argv[0].endswith("setpriv") and launch.argv[1:3] == ["--pdeathsig=KILL", "--"]
    argv = launch.argv[3:]
    assert argv[0].endswith("prlimit")
    assert argv[1:7] == [
        "--fsize=1048576",
        "--nofile=1024",
        "--core=0",
        "--cpu=5",
        "--nproc=1024",  # per user without cgroups: a backstop, not the session's 7
        "--as=104857600",  # no cgroup: the memory limit is the address space
    ]
    assert argv[7:] == ["--", sys.executable, "-q"]
    assert launch.env["TERM"] == "xterm-256color" and launch.env["GAME"] == "on"
    assert "JUPYBOT_CONFIG" not in launch.env and "SSH_AUTH_SOCK" not in launch.env
    assert set(launch.env) == {
        *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TMPDIR"),
        *("TERM", "COLORTERM", "GAME"),
    }


def test_sandboxed_programs_see_only_what_their_entry_declares(tmp_path: Path) -> None:
    game = tmp_path / "game"
    game.mkdir()
    profile = program_profile(
        ProgramConfig(
            name="game",
            title="Game",
            description="",
            argv=("python3", "{demos}/quiz.py"),
            files=(str(game),),
            writable=(str(tmp_path / "scores"),),
        ),
        Sandbox(SandboxConfig()),
    )
    args = bubblewrap_args(profile)
    assert profile.argv == ("/usr/bin/setsid", "--ctty", "/usr/bin/python3", f"{DEMOS_DIR}/quiz.py")
    pairs = list(zip(args, args[1:], args[2:], strict=False))
    assert ("--ro-bind", str(game), str(game)) in pairs
    assert ("--ro-bind", DEMOS_DIR, DEMOS_DIR) in pairs
    assert ("--bind", str(tmp_path / "scores"), str(tmp_path / "scores")) in pairs
    assert "--unshare-net" in args and "--die-with-parent" in args and "--disable-userns" in args
    # Nothing of root's home, but what the entry shows (a checkout may be below it: issue 29).
    shown = (str(game), DEMOS_DIR, str(tmp_path / "scores"))
    home = [arg for arg in args if "/root" in arg and not arg.startswith(shown)]
    assert not any("/etc/shadow" in arg or arg == "/etc" for arg in args) and not home


def test_a_missing_executable_is_named() -> None:
    program = ProgramConfig(name="x", title="X", description="", argv=("no-such-thing-here",))
    with pytest.raises(ProgramNotFound, match="'no-such-thing-here' is not installed"):
        program_profile(program, Sandbox(SandboxConfig()))


def test_catalogue_mistakes_are_named_with_their_key_path(tmp_path: Path) -> None:
    program = ProgramConfig(
        name="x",
        title="X",
        description="",
        argv=("/opt/nowhere/bin/game",),
        files=("/opt/nowhere",),
        cwd="/srv/game",
    )
    problems = program_problems(program, Sandbox(SandboxConfig()), "programs[3]")
    assert problems == [
        "programs[3].files[0]: /opt/nowhere does not exist",
        "programs[3].argv: '/opt/nowhere/bin/game' does not exist (check argv[0])",
        "programs[3].cwd: /srv/game is not a directory the sandbox shows "
        "(list it, or a directory above it, in files: or writable:)",
    ]


def test_a_script_named_in_argv_but_not_shown_is_named(tmp_path: Path) -> None:
    script = tmp_path / "report.py"
    script.write_text("print('hi')\n")
    program = ProgramConfig(
        name="sales", title="Sales", description="", argv=("python3", str(script), "-v")
    )
    problems = program_problems(program, Sandbox(SandboxConfig()), "programs[1]")
    assert problems == [
        f"programs[1].argv[1]: {script} is not inside the sandbox "
        "(list its folder, or a folder above it, in files:)"
    ]
    shown = replace(program, files=(str(tmp_path),))
    assert program_problems(shown, Sandbox(SandboxConfig()), "programs[1]") == []
