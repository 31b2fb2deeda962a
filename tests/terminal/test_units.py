"""The terminal's pure parts: frames, replay, origins, sizes, the launch command line."""

from __future__ import annotations

import struct
import sys

import pytest

from jupybot.config.terminal import ProgramConfig, ProgramLimits
from jupybot.terminal import wire
from jupybot.terminal.pty import ProgramNotFound, launch_argv, launch_env, valid_size
from jupybot.terminal.sessions import ReplayBuffer
from jupybot.terminal.websocket import origin_allowed


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
    assert origin_allowed(None, "jupybot.example:8080", ())  # not a browser
    assert origin_allowed("http://jupybot.example:8080", "jupybot.example:8080", ())
    assert not origin_allowed("https://evil.example", "jupybot.example:8080", ())
    assert origin_allowed("https://me.example/", "jupybot.example", ("https://me.example",))


def test_sizes() -> None:
    assert valid_size(80, 24) and valid_size(1000, 500)
    assert not valid_size(0, 24) and not valid_size(80, 501) and not valid_size(True, 24)
    assert not valid_size("80", 24)


def test_programs_run_under_prlimit_with_a_clean_environment() -> None:
    program = ProgramConfig(
        name="py",
        title="Python",
        description="",
        argv=("{python}", "-q"),
        env={"GAME": "on"},
        limits=ProgramLimits(cpu_seconds=5, memory_mb=100, processes=7, file_size_mb=1),
    )
    argv = launch_argv(program)
    assert argv[0].endswith("prlimit")
    assert argv[1:6] == ["--cpu=5", "--as=104857600", "--nproc=7", "--fsize=1048576", "--"]
    assert argv[6:] == [sys.executable, "-q"]
    env = launch_env(program)
    assert env["TERM"] == "xterm-256color" and env["GAME"] == "on"
    assert set(env) == {"PATH", "LANG", "TERM", "COLORTERM", "HOME", "GAME"}


def test_a_missing_executable_is_named() -> None:
    program = ProgramConfig(name="x", title="X", description="", argv=("no-such-thing-here",))
    with pytest.raises(ProgramNotFound, match="'no-such-thing-here' is not installed"):
        launch_argv(program)
