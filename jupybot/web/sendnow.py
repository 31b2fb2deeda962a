"""Writing to a TCP connection now rather than at the reactor's next turn.

Twisted's C{transport.write} only buffers: the send happens when the reactor next finds the
socket writable, after an C{epoll_ctl} to watch it and before another to stop. For a terminal
flooding its viewer that is two reactor turns and two system calls per burst of output, 15% of
the server's CPU per MB (bench.terminal, issue 27). L{write_now} sends at once what the socket
takes when nothing waits before it, and leaves the rest to the transport as before, so order,
backpressure (a registered producer is paused as the buffer fills) and closing are Twisted's.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.tcp import Connection
from twisted.protocols.policies import ProtocolWrapper

__all__ = ["Writable", "write_now"]


class Writable(Protocol):
    """A transport, or a layer over one (a ProtocolWrapper)."""

    def write(self, data: bytes) -> None: ...


def write_now(transport: Writable, data: bytes) -> None:
    """Write C{data} to C{transport}, sending at once what its socket takes if no earlier
    write waits to be sent."""
    connection = _plain_tcp(transport)
    if connection is not None and _idle(connection):
        sent = connection.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            if sent == len(data):
                return
            data = data[sent:]
        # Nothing sent or an error (the transport's own write finds it and closes).
    transport.write(data)


def _plain_tcp(transport: object) -> Connection | None:
    """The TCP connection under C{transport} if every layer above it passes writes through
    unchanged, else None (TLS encrypts them: its bytes must go through its own write)."""
    while isinstance(transport, ProtocolWrapper):
        if type(transport).write is not ProtocolWrapper.write:
            return None
        transport = transport.transport
    return transport if isinstance(transport, Connection) else None


def _idle(connection: Connection) -> bool:
    """Is the connection still open, with nothing buffered to send before new data? (Once it
    is closing, what the socket takes still goes before the close, as Twisted's would.)"""
    return bool(
        connection.connected
        and not connection._tempDataBuffer
        and connection.offset == len(connection.dataBuffer)
    )
