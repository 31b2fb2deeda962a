"""Line mode's core: when has a program answered a command, and what is the answer?

Pure: fed the program's output and the client's commands, it asks a L{TerminalProbe} whether
the program waits for input again and hands answers (and parts of large ones) to a callback,
on a clock of its own. The websocket adapter (`websocket.LineModeProtocol`) only translates.
See docs/protocol.md, "Line mode".
"""

from __future__ import annotations

import codecs
import re
import termios
from collections import deque
from collections.abc import Callable
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

# Output quiet this long, then the program's state is checked.
QUIET_SECONDS = 0.02
# A command that produced no output beyond its echo is answered after this long.
SILENT_ANSWER_SECONDS = 1.0

# Escapes that switch the terminal's modes rather than show anything: set/reset mode (DEC
# private or not: bracketed paste, alternate screen, cursor keys, insert...), keypad
# application/normal, push/pop title. readline ends bracketed paste with a carriage return.
_MODE_SWITCHES = re.compile(
    rb"\x1b\[\?2004l\r|\x1b\[\??[0-9;]*[hl]|\x1b[=>]|\x1b\[2[23](?:;[0-9]*)*t"
)
# What may still grow into one of them when output is cut in the middle.
_UNFINISHED = re.compile(rb"\x1b(?:\[[?0-9;]*)?|\x1b\[\?2004l")
# How an echoed line ends: the terminal's CR LF, or CR CR LF from a line editor that writes its
# own CR LF through the terminal's output processing (Node's readline).
_ECHO_END = rb"\r+\n"
# A line editor's redraw of a fresh line (Node's readline: column 1, erase below, the prompt,
# then the cursor put after it): on a line with nothing on it yet, the first two draw nothing.
_FRESH_LINE_REDRAW = re.compile(rb"(?:^|(?<=\n))\x1b\[1?G\x1b\[0?J")
_TO_COLUMN = re.compile(rb"\x1b\[([0-9]*)G")
_CSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class TerminalProbe(Protocol):
    """What line mode asks about the program's terminal (a L{PtySession} answers)."""

    def waiting_for_input(self) -> bool:
        """Is the program blocked waiting for input, with none left unread?"""

    def local_modes(self) -> int:
        """The terminal's local modes (termios C{c_lflag}) as the program set them."""


class NotAnswered(Exception):
    """A command came before the program answered the previous one."""


def echoes_input(local_modes: int) -> bool:
    """Will a line written now come back as its echo? With ECHO on the terminal echoes it; with
    ICANON off the program reads keys and echoes them itself (readline). Only a program that
    turned ECHO off and reads whole lines (getpass, `read -s`) shows nothing."""
    return bool(local_modes & termios.ECHO) or not local_modes & termios.ICANON


class ModeSwitchFilter:
    """Removes mode-switching escapes from output that arrives in pieces."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data, self._held = self._held + data, b""
        start = data.rfind(b"\x1b", max(0, len(data) - 32))
        if start >= 0 and _UNFINISHED.fullmatch(data, start):
            data, self._held = data[:start], data[start:]
        return _MODE_SWITCHES.sub(b"", data)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return _MODE_SWITCHES.sub(b"", held)


class Answerer:
    """One line-mode session's answers. L{start} awaits the program's first prompt; each
    L{command} is answered once the program waits for input again: quiet for L{QUIET_SECONDS},
    then waiting on two checks in a row with no output between, and only once it printed
    something beyond the echo of the command (or after L{SILENT_ANSWER_SECONDS}).

    C{send(text, more)} gets each answer; C{more} is true for every part of a large answer but
    the last. Parts hold at most C{part_bytes} bytes of output and never split a character."""

    def __init__(
        self,
        clock: IReactorTime,
        probe: TerminalProbe,
        send: Callable[[str, bool], None],
        part_bytes: int,
    ) -> None:
        self._clock = clock
        self._probe = probe
        self._send = send
        self._part_bytes = part_bytes
        self._filter = ModeSwitchFilter()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = bytearray()
        # The echoes of the command's lines still to be found in the output, and where in
        # the pending output to look for the next one (not in what came before the command).
        self._echoes: deque[bytes] = deque()  # each line, without its end
        self._search_from = 0
        self._awaiting = False
        self._check: IDelayedCall | None = None
        self._asked_at = 0.0
        self._seen_waiting = False
        self._sent_part = False

    @property
    def awaiting(self) -> bool:
        """Is an answer (to the start or a command) still to come?"""
        return self._awaiting

    def start(self) -> None:
        """The program was just started: its first answer is its greeting and prompt."""
        self._await_answer()

    def command(self, text: str) -> bytes:
        """The bytes to write to the terminal for C{text} (one line or several), or
        L{NotAnswered} while the previous command has not been answered."""
        if self._awaiting:
            raise NotAnswered("the program has not answered the previous command yet")
        data = text if text.endswith("\n") else text + "\n"
        self._echoes.clear()
        if echoes_input(self._probe.local_modes()):
            self._echoes.extend(line.encode() for line in data[:-1].split("\n"))
        self._search_from = len(self._pending)
        self._await_answer()
        return data.encode()

    def output(self, data: bytes) -> None:
        self._pending += self._filter.feed(data)
        self._seen_waiting = False
        self._remove_echoes()
        self._send_full_parts()
        if self._awaiting:
            self._schedule_check()

    def ended(self) -> str:
        """The program ended: what it printed since the last answer (the rest of it, after
        any parts sent now)."""
        self.stop()
        self._pending += self._filter.flush()
        self._remove_echoes()
        self._echoes.clear()
        self._send_full_parts()
        return self._take(final=True)

    def stop(self) -> None:
        self._awaiting = False
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._check = None

    def _await_answer(self) -> None:
        self._awaiting = True
        self._seen_waiting = False
        self._sent_part = False
        self._asked_at = self._clock.seconds()
        self._schedule_check()

    def _schedule_check(self) -> None:
        if self._check is not None and self._check.active():
            self._check.reset(QUIET_SECONDS)
        else:
            self._check = self._clock.callLater(QUIET_SECONDS, self._check_waiting)

    def _check_waiting(self) -> None:
        self._check = None
        if not self._awaiting:
            return
        # Input just written may not have reached the terminal's read queue yet, and the
        # program still looks as if it waited: believe that only once it has answered
        # something, or after a while for a command that prints nothing.
        settled = self._clock.seconds() - self._asked_at >= SILENT_ANSWER_SECONDS
        waiting = (self._beyond_echo() or settled) and self._probe.waiting_for_input()
        if waiting and self._seen_waiting:
            # Twice in a row, with no output between: not a passing moment of the program.
            self._awaiting = False
            self._seen_waiting = False
            self._pending += self._filter.flush()
            self._echoes.clear()  # an echo still missing now is not coming
            self._send_full_parts()
            self._send(self._take(final=True), False)
        else:
            self._seen_waiting = waiting
            self._schedule_check()

    def _beyond_echo(self) -> bool:
        """Has the program printed anything since the command but the command's echo?"""
        if self._sent_part:
            return True
        after = bytes(self._pending[self._search_from :])
        if not after:
            return False
        return not (self._echoes and _may_start_echo(after, self._echoes[0]))

    def _remove_echoes(self) -> None:
        """The terminal's (or readline's) echo of each line of the command is not part of the
        answer, wherever it lands: after output printed before it, or between prompts."""
        while self._echoes:
            echo = re.compile(re.escape(self._echoes[0]) + _ECHO_END)
            found = echo.search(self._pending, self._search_from)
            if found is None:
                return
            del self._pending[found.start() : found.end()]
            self._search_from = found.start()
            self._echoes.popleft()

    def _send_full_parts(self) -> None:
        """Send the output that fills whole parts now, each with C{more}; keep back what may
        be the start of an echo still expected."""
        held = len(self._echoes[0]) + 2 if self._echoes else 0
        while len(self._pending) - held >= self._part_bytes:
            self._send(self._take(limit=self._part_bytes), True)
            self._sent_part = True

    def _take(self, limit: int | None = None, final: bool = False) -> str:
        """The first C{limit} bytes of pending output (all of it by default) as text."""
        data = bytes(self._pending if limit is None else self._pending[:limit])
        if limit is not None and len(data) > 1 and data.endswith(b"\r"):
            data = data[:-1]  # its \n may be the first byte of the next part
        del self._pending[: len(data)]
        self._search_from = max(0, self._search_from - len(data))
        text = self._decoder.decode(_without_moves_in_place(data), final=final)
        return text.replace("\r\n", "\n")


def _may_start_echo(data: bytes, line: bytes) -> bool:
    """Could C{data} be the beginning of C{line}'s echo (the line, then its end)?"""
    if len(data) <= len(line):
        return line.startswith(data)
    return data.startswith(line) and re.fullmatch(rb"\r*", data[len(line) :]) is not None


def _without_moves_in_place(data: bytes) -> bytes:
    """C{data} without the cursor moves of a line editor's redraw that change nothing on the
    screen: a fresh line's "column 1, erase below", and a move to the column the cursor is in."""
    data = _FRESH_LINE_REDRAW.sub(b"", data)

    def unless_in_place(move: re.Match[bytes]) -> bytes:
        line_start = max(data.rfind(b"\n", 0, move.start()), data.rfind(b"\r", 0, move.start()))
        shown = _CSI.sub(b"", data[line_start + 1 : move.start()]).decode("utf-8", "replace")
        column = int(move.group(1) or 1)
        return b"" if column == len(shown) + 1 else move.group(0)

    return _TO_COLUMN.sub(unless_in_place, data)
