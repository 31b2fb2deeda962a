"""Line mode's core (`jupybot.terminal.linemode`) on a fake clock and a fake terminal."""

from __future__ import annotations

import termios

import pytest
from twisted.internet.task import Clock

from jupybot.terminal.linemode import (
    QUIET_SECONDS,
    SILENT_ANSWER_SECONDS,
    Answerer,
    ModeSwitchFilter,
    NotAnswered,
    echoes_input,
)

# readline's terminal (it echoes what it reads), a cooked one, and getpass's.
READLINE = 0
COOKED = termios.ICANON | termios.ECHO
NO_ECHO = termios.ICANON


class FakeTerminal:
    def __init__(self, modes: int = READLINE) -> None:
        self.waiting = False
        self.modes = modes

    def waiting_for_input(self) -> bool:
        return self.waiting

    def local_modes(self) -> int:
        return self.modes


class Client:
    """An answerer with a fake clock and terminal, and what it sent."""

    def __init__(self, modes: int = READLINE, part_bytes: int = 1000) -> None:
        self.clock = Clock()
        self.terminal = FakeTerminal(modes)
        self.sent: list[tuple[str, bool]] = []
        self.answerer = Answerer(
            self.clock, self.terminal, lambda text, more: self.sent.append((text, more)), part_bytes
        )

    def settle(self, seconds: float = 0.1) -> None:
        """Let time pass in steps of the quiet period."""
        for _ in range(round(seconds / QUIET_SECONDS)):
            self.clock.advance(QUIET_SECONDS)

    def answers(self) -> list[str]:
        return [text for text, more in self.sent if not more]


def test_an_answer_waits_until_the_program_waits_for_input_twice() -> None:
    client = Client()
    client.answerer.start()
    client.answerer.output(b">>> ")
    client.settle()
    assert client.sent == []  # still running
    client.terminal.waiting = True
    client.clock.advance(QUIET_SECONDS)
    assert client.sent == []  # once is a passing moment
    client.clock.advance(QUIET_SECONDS)
    assert client.sent == [(">>> ", False)]


def test_output_between_checks_starts_the_count_again() -> None:
    client = Client()
    client.answerer.start()
    client.terminal.waiting = True
    client.answerer.output(b"a")
    client.clock.advance(QUIET_SECONDS)
    client.answerer.output(b"b")
    client.clock.advance(QUIET_SECONDS)
    assert client.sent == []
    client.clock.advance(QUIET_SECONDS)
    assert client.answers() == ["ab"]


def test_the_echo_alone_is_not_an_answer_until_a_silent_command_settles() -> None:
    client = Client()
    client.terminal.waiting = True
    data = client.answerer.command("x = 1")
    assert data == b"x = 1\n"
    client.answerer.output(b"x = 1\r\n")
    client.settle(SILENT_ANSWER_SECONDS / 2)
    assert client.sent == []  # the program may not have read the line yet
    client.settle(SILENT_ANSWER_SECONDS)
    assert client.answers() == [""]


def test_a_command_before_the_answer_is_refused() -> None:
    client = Client()
    client.answerer.command("import time; time.sleep(9)")
    with pytest.raises(NotAnswered):
        client.answerer.command("1")


def test_the_echo_is_removed_after_output_that_came_first() -> None:
    client = Client()
    client.answerer.output(b"tick\r\n")  # printed on its own, between answers
    client.terminal.waiting = True
    client.answerer.command("6 * 7")
    client.answerer.output(b"6 * 7\r")
    client.answerer.output(b"\n42\r\n>>> ")
    client.settle()
    assert client.answers() == ["tick\n42\n>>> "]


def test_several_lines_are_answered_once_without_their_echoes() -> None:
    client = Client()
    client.answerer.command("for i in range(2):\n    print(i)\n\n")
    client.answerer.output(b"for i in range(2):\r\n... ")
    client.settle()  # the program reads the next line at once: not waiting
    client.answerer.output(b"    print(i)\r\n... \r\n0\r\n1\r\n>>> ")
    client.terminal.waiting = True
    client.settle()
    assert client.answers() == ["... ... 0\n1\n>>> "]


def test_a_no_echo_prompt_expects_no_echo() -> None:
    client = Client(NO_ECHO)
    client.terminal.waiting = True
    client.answerer.command("secret")
    client.answerer.output(b"secret: is ok\r\n")  # the program's own output, kept whole
    client.settle()
    assert client.answers() == ["secret: is ok\n"]


def test_echoes_are_expected_unless_the_program_reads_lines_with_echo_off() -> None:
    assert echoes_input(COOKED)
    assert echoes_input(READLINE)  # raw keys: readline echoes them itself
    assert not echoes_input(NO_ECHO)


def test_mode_switching_escapes_are_removed_even_when_split() -> None:
    client = Client()
    client.answerer.command("1+2")
    for piece in (b"1+2\r\n\x1b[?2004", b"l\r3\r\n\x1b", b"[?2004h\x1b[1mbold\x1b[0m"):
        client.answerer.output(piece)
    client.terminal.waiting = True
    client.settle()
    assert client.answers() == ["3\n\x1b[1mbold\x1b[0m"]


def test_the_filter_keeps_what_draws() -> None:
    screen = (
        b"\x1b[?1049h\x1b[1;24r\x1b[4l\x1b[?1h\x1b=\x1b[22;0;0t\x1b[H\x1b[2Jword? \x1b[?1l\x1b>"
    )
    assert ModeSwitchFilter().feed(screen) == b"\x1b[1;24r\x1b[H\x1b[2Jword? "


def test_a_large_answer_goes_in_parts_that_never_split_a_character() -> None:
    client = Client(part_bytes=100)
    client.answerer.command("print('é' * 150)")
    client.answerer.output(b"print('\xc3\xa9' * 150)\r\n" + "é".encode() * 150)
    client.answerer.output(b"\r\n>>> ")
    client.terminal.waiting = True
    client.settle()
    assert all(more for _, more in client.sent[:-1]) and not client.sent[-1][1]
    assert len(client.sent) > 1
    assert "".join(text for text, _ in client.sent) == "é" * 150 + "\n>>> "


def test_the_end_sends_what_is_left() -> None:
    client = Client()
    client.answerer.command("exit(3)")
    client.answerer.output(b"exit(3)\r\nbye\r\n\x1b[?2004l")  # held: a \r may follow
    assert client.answerer.ended() == "bye\n"
    client.settle()
    assert client.sent == []


def test_a_line_editors_echo_and_redraw_are_not_in_the_answer() -> None:
    # Recorded from Node 20's readline on a PTY: the line echoed with CR CR LF, and each prompt
    # drawn as "column 1, erase below, prompt, cursor after the prompt".
    client = Client()
    client.answerer.start()
    client.answerer.output(b"\x1b[1G\x1b[0J> \x1b[3G")
    client.terminal.waiting = True
    client.settle()
    client.terminal.waiting = False
    client.answerer.command("a\nb")
    client.answerer.output(b"a\r\r\nyou said a\r\n\x1b[1G\x1b[0J> \x1b[3Gb\r\r\n")
    client.answerer.output(b"you said b\r\n\x1b[1G\x1b[0J> \x1b[3G")
    client.terminal.waiting = True
    client.settle()
    assert client.answers() == ["> ", "you said a\n> you said b\n> "]


def test_a_cursor_move_that_changes_the_screen_stays() -> None:
    client = Client()
    client.answerer.start()
    client.answerer.output(b"ab\x1b[1Gc\x1b[5G")
    client.terminal.waiting = True
    client.settle()
    assert client.answers() == ["ab\x1b[1Gc\x1b[5G"]
