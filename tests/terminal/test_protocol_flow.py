"""The raw protocol's flow control at its seams: the output window and the input's pause of the
socket, with fakes for the TCP transport and the program's terminal."""

from __future__ import annotations

import struct
from collections import deque
from types import SimpleNamespace
from typing import Any, cast

import pytest
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from jupybot.terminal import wire
from jupybot.terminal.websocket import PING_TIMEOUT_SECONDS, RawTerminalProtocol

WINDOW = 64 * 1024


class FakeTcp:
    """The transport: whether it reads, and the payloads of the ready frames written to it."""

    def __init__(self, sent: list[bytes]) -> None:
        self.reading = True
        self.sent = sent

    def write(self, data: bytes) -> None:
        self.sent += websocket_payloads(data)

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def reads(self) -> bool:
        return self.reading


class FakeSocket:
    """A TCP transport's producer registration and send-buffer size, as Twisted keeps them."""

    def __init__(self) -> None:
        self.bufferSize = 64 * 1024  # Twisted's
        self.producer: object | None = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class FakePty:
    def __init__(self) -> None:
        self.paused_by: set[str] = set()

    def pause_reading(self, reason: str) -> None:
        self.paused_by.add(reason)

    def resume_reading(self, reason: str) -> None:
        self.paused_by.discard(reason)

    def throttle_input(self, producer: object) -> None:
        pass


class Protocol(RawTerminalProtocol):
    """A raw protocol past its hello, sending into lists."""

    def __init__(self, window: int = WINDOW) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.send_queue: deque[tuple[bytes, bool]] = deque()  # autobahn's, made on connecting
        self.pings = 0
        self.clock = Clock()
        self.tcp = FakeTcp(self.sent)
        self.pty = FakePty()
        config = SimpleNamespace(window_kb=window // 1024)
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


def websocket_payloads(data: bytes) -> list[bytes]:
    """The payloads of the final, unmasked frames (RFC 6455 5.2) that C{data} holds, whole."""
    payloads = []
    while data:
        assert data[0] == 0x82 and data[1] < 0x80  # FIN, binary; not masked
        length, start = data[1], 2
        if length == 126:
            length, start = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, start = struct.unpack("!Q", data[2:10])[0], 10
        payloads.append(data[start : start + length])
        assert len(payloads[-1]) == length
        data = data[start + length :]
    return payloads


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


@pytest.mark.parametrize("size", [1, 124, 125, 65534, 65535, 65536, 3 * 65535 + 7])
def test_output_goes_as_output_messages_of_at_most_a_frame_each(size: int) -> None:
    """The browser gets each burst whole, in order, as OUTPUT messages within the frame size
    (64 KB) it may be sent, whatever length encoding each needs."""
    protocol, _, _, sent = open_protocol()
    data = bytes(n % 251 for n in range(size))
    protocol.output(data)
    assert all(frame[0] == wire.OUTPUT and len(frame) <= 64 * 1024 for frame in sent)
    assert b"".join(frame[1:] for frame in sent) == data
    assert len(sent) == -(-size // (64 * 1024 - 1))


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


def test_the_socket_under_the_sites_wrappers_may_hold_the_window() -> None:
    """Twisted pauses the program whenever the socket's own transport buffers more than its
    bufferSize. Set on the site's wrapper above it instead, Twisted's 64 KB stayed in force:
    a flood (`head -c 200M /dev/zero`) was paused 3400 times rather than 500."""
    protocol = Protocol(window=512 * 1024)
    socket = FakeSocket()
    wrapper = ProtocolWrapper(WrappingFactory(None), TwistedProtocol())
    wrapper.transport = cast(Any, socket)
    protocol.transport = cast(Any, wrapper)
    program = SimpleNamespace(name="bulk", title="Bulk")
    session = SimpleNamespace(
        id="s", resume_token="t", program=program, replay=SimpleNamespace(total=0), pty=protocol.pty
    )
    protocol._attach(cast(Any, session))
    assert socket.bufferSize == 512 * 1024
    assert socket.producer is not None
