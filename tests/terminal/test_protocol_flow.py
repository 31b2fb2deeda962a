"""The raw protocol's flow control at its seams: the output window and the input's pause of the
socket, with fakes for the TCP transport and the program's terminal."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from twisted.internet.task import Clock

from jupybot.terminal.websocket import PING_TIMEOUT_SECONDS, RawTerminalProtocol

WINDOW = 64 * 1024


class FakeTcp:
    def __init__(self) -> None:
        self.reading = True

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def reads(self) -> bool:
        return self.reading


class FakePty:
    def __init__(self) -> None:
        self.paused_by: set[str] = set()

    def pause_reading(self, reason: str) -> None:
        self.paused_by.add(reason)

    def resume_reading(self, reason: str) -> None:
        self.paused_by.discard(reason)


class Protocol(RawTerminalProtocol):
    """A raw protocol past its hello, sending into lists."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.pings = 0
        self.clock = Clock()
        self.tcp = FakeTcp()
        self.pty = FakePty()
        config = SimpleNamespace(window_kb=WINDOW // 1024)
        factory: Any = SimpleNamespace(
            frame_bytes=64 * 1024, sessions=SimpleNamespace(config=config), reactor=self.clock
        )
        self.factory = factory
        self.transport = cast(Any, self.tcp)
        self.state = self.STATE_OPEN
        self.session = cast(Any, SimpleNamespace(pty=self.pty))

    def sendMessage(
        self,
        payload: bytes,
        isBinary: bool = False,
        fragmentSize: int | None = None,
        sync: bool = False,
        doNotCompress: bool = False,
    ) -> None:
        self.sent.append(payload)

    def sendPing(self, payload: bytes | None = None) -> None:
        self.pings += 1


def open_protocol() -> tuple[Protocol, FakeTcp, FakePty, list[bytes]]:
    protocol = Protocol()
    return protocol, protocol.tcp, protocol.pty, protocol.sent


def test_output_beyond_the_window_pauses_the_program() -> None:
    protocol, _, pty, sent = open_protocol()
    protocol.output(b"x" * WINDOW)
    assert pty.paused_by == set()
    protocol.output(b"x")
    assert pty.paused_by == {"window"}
    assert sum(len(frame) - 1 for frame in sent) == WINDOW + 1


def test_while_input_waits_for_the_program_the_socket_is_not_read_nor_the_window_kept() -> None:
    protocol, tcp, pty, _ = open_protocol()
    protocol.output(b"x" * (WINDOW + 1))
    assert pty.paused_by == {"window"}
    # The program has not read 64 KB of input: its acknowledgements wait behind more input.
    protocol.input_paused(True)
    assert not tcp.reads()
    assert pty.paused_by == set()  # else the program waits for them, and they for the program
    protocol.output(b"x" * WINDOW)
    assert pty.paused_by == set()
    protocol.input_paused(False)
    assert tcp.reads()
    protocol.output(b"x")
    assert pty.paused_by == {"window"}


def test_a_missing_pong_behind_unread_input_is_not_a_dead_peer() -> None:
    protocol = Protocol()
    protocol.input_paused(True)
    protocol.onAutoPingTimeout()
    assert protocol.pings == 1 and not protocol.tcp.reads()
    protocol.clock.advance(PING_TIMEOUT_SECONDS)  # probed again: a write to a gone peer fails
    assert protocol.pings == 2
