"""Which system calls mean "the program waits for input" (`jupybot.terminal._proc`): a wait
with a timeout returns by itself, so the program is not waiting for its terminal but for time."""

from __future__ import annotations

import pytest

from jupybot.terminal._proc import _WAITING_SYSCALLS, _waits_for_ever

X86 = _WAITING_SYSCALLS["x86_64"]


def _arguments(line: str) -> list[str]:
    """The arguments of a /proc/PID/syscall line (after the call's number)."""
    return line.split()[1:]


@pytest.mark.parametrize(
    ("line", "for_ever"),
    [
        # Recorded on x86-64 (Debian 12): Node 20's event loop with a 300 ms timer pending, and
        # with none; Python 3.11's select.select([], [], [], 10); its REPL and bc in readline.
        ("281 0xe 0x7ffc31108400 0x400 0x12c 0x0 0x8 0x7ffc311076a0 0x7f8eccf26cae", False),
        ("281 0xf 0x7ffc60220ac0 0x400 0xffffffff 0x0 0x8 0x7ffc6021fd60 0x7f4d23d26cae", True),
        ("270 0x0 0x0 0x0 0x0 0x7ffc92657e20 0x0 0x7ffc92657e10 0x7fb423f1c954", False),
        ("270 0x1 0x7ffdbfbc9f60 0x0 0x0 0x0 0x0 0x7ffdbfbc9ed0 0x7f758bb64954", True),
        ("270 0x1 0x7ffecabccdd0 0x0 0x0 0x0 0x7ffecabccd00 0x7ffecabcccc0 0x7fc33b600aec", True),
        # poll() with 100 ms, and with -1 sign-extended to the whole register.
        ("7 0x7ffc8e1f4a10 0x1 0x64 0x0 0x0 0x0 0x7ffc8e1f49e8 0x7f6a0a8f1b1f", False),
        ("7 0x7ffc8e1f4a10 0x1 0xffffffffffffffff 0x0 0x0 0x0 0x7ffc8e1f49e8 0x7f6a0a8f1b1f", True),
    ],
)
def test_only_a_wait_without_a_timeout_is_a_wait_for_input(line: str, for_ever: bool) -> None:
    number = int(line.split()[0])
    assert _waits_for_ever(_arguments(line), *X86[number]) is for_ever


def test_a_line_too_short_to_tell_is_no_wait() -> None:
    assert _waits_for_ever(["0x1"], *X86[281]) is False
