"""write_now: output sent at once when nothing waits, never out of order, never past TLS."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from jupybot.web.sendnow import write_now


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def connection(ours: socket.socket, reactor: MemoryReactor) -> tcp.Server:
    """An accepted connection on C{ours}, as Twisted's port makes one (on a fake reactor)."""
    server = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None, 1, reactor)  # type: ignore[arg-type]
    server.protocol.makeConnection(server)
    return server


def close(server: tcp.Server) -> None:
    """The reactor's part once a closing connection is writable: the last write, the close."""
    why = server.doWrite()
    assert why is not None
    server.connectionLost(Failure(why))


def received(peer: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


def test_an_idle_connection_sends_at_once(sockets: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = sockets
    reactor = MemoryReactor()
    server = connection(ours, reactor)
    write_now(server, b"output")
    assert received(peer) == b"output"
    assert server not in reactor.writers  # nothing left for the reactor to send


def test_data_already_waiting_goes_first(sockets: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = sockets
    reactor = MemoryReactor()
    server = connection(ours, reactor)
    server.write(b"first ")
    write_now(server, b"second")
    assert received(peer) == b""  # the transport's buffer holds both, in order
    server.doWrite()
    assert received(peer) == b"first second"


def test_what_the_socket_cannot_take_is_buffered_in_order(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = sockets
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reactor = MemoryReactor()
    server = connection(ours, reactor)
    data = bytes(range(256)) * 4096  # 1 MB: more than the socket holds
    write_now(server, data)
    assert server in reactor.writers  # the rest waits for the socket
    got = received(peer)
    while len(got) < len(data):
        server.doWrite()
        got += received(peer)
    assert got == data


class Scrambling(ProtocolWrapper):
    """A layer that changes what is written, as TLS does."""

    def write(self, data: bytes) -> None:
        self.transport.write(data[::-1])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("layer", "at_once", "on_the_wire"),
    [
        (ProtocolWrapper, b"secret", b"secret"),  # passes writes on: looked through
        (Scrambling, b"", b"terces"),  # changes them: never bypassed, no plain bytes
    ],
)
def test_a_layer_over_the_connection(
    sockets: tuple[socket.socket, socket.socket],
    layer: type[ProtocolWrapper],
    at_once: bytes,
    on_the_wire: bytes,
) -> None:
    ours, peer = sockets
    reactor = MemoryReactor()
    server = connection(ours, reactor)
    wrapper = layer(WrappingFactory(None), Protocol())
    wrapper.makeConnection(server)
    write_now(wrapper, b"secret")
    assert received(peer) == at_once
    server.doWrite()
    assert at_once + received(peer) == on_the_wire


def test_tls_is_such_a_layer() -> None:
    assert TLSMemoryBIOProtocol.write is not ProtocolWrapper.write


def test_a_closing_connection_sends_before_it_closes(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = sockets
    reactor = MemoryReactor()
    server = connection(ours, reactor)
    server.loseConnection()
    write_now(server, b"last words")
    close(server)
    assert peer.recv(100) == b"last words"
    assert peer.recv(100) == b""  # then the end of the stream


def test_a_closed_connection_takes_nothing(sockets: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = sockets
    reactor = MemoryReactor()
    server = connection(ours, reactor)
    server.loseConnection()
    close(server)
    write_now(server, b"too late")  # no error: dropped, as Twisted's write drops it
    assert peer.recv(100) == b""  # the end of the stream, nothing before it
