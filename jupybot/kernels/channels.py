"""One kernel's channels websocket (`/api/kernels/<id>/channels`), kept connected.

Messages are Jupyter messages, in the binary `v1.kernel.websocket.jupyter.org` format where the
gateway accepts it (the gateway then passes them between the socket and the kernel unparsed),
else as JSON text frames with a `channel` key (L{_wire}). Replies are routed to whoever sent
the request, by `parent_header.msg_id`; kernel-wide messages (a `status` with no parent:
restarting, dead) go to C{on_kernel_message}. The session id is stable across reconnections, so
the gateway can replay what was sent while the socket was down.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..reactor import NetworkReactor
from ._wire import (
    KERNEL_WS_PROTOCOL,
    Message,
    decode_legacy,
    decode_v1,
    encode_legacy,
    encode_v1,
)
from .api import GatewayUnavailable

log = Logger()

MessageHandler = Callable[[Message], None]

PROTOCOL_VERSION = "5.3"


class _ChannelsProtocol(WebSocketClientProtocol):
    factory: _ChannelsFactory
    v1 = False  # the gateway chose the v1 format (on open)

    def dataReceived(self, data: bytes) -> None:
        _ack_at_once(self.transport)
        super().dataReceived(data)

    def onOpen(self) -> None:
        self.v1 = self.websocket_protocol_in_use == KERNEL_WS_PROTOCOL
        self.factory.channels.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary != self.v1:
            # In the legacy format, binary frames carry buffers (widgets): nothing here uses them.
            return
        try:
            message = decode_v1(payload) if isBinary else decode_legacy(payload)
        except ValueError:
            log.warn("kernels: undecodable frame from the gateway ignored")
            return
        self.factory.channels.received(message)

    def send_jupyter(
        self, channel: str, header: Message, parent_header: Message, content: Message
    ) -> None:
        if self.v1:
            self.sendMessage(encode_v1(channel, header, parent_header, content), isBinary=True)
        else:
            self.sendMessage(encode_legacy(channel, header, parent_header, content))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.channels.closed(self, reason or f"code {code}")


def _ack_at_once(transport: object) -> None:
    """Acknowledge the gateway's frames now rather than after Linux's 40 ms delayed-ACK timer.

    A gateway writes each reply as several small frames (busy, result, idle, reply) without
    TCP_NODELAY, so Nagle holds each one until the previous is acknowledged: with delayed ACKs,
    every execution took ~48 ms instead of ~6 (bench/kernels.py). The kernel clears the flag
    as it sees fit, hence setting it on every read.
    """
    handle = getattr(transport, "getHandle", None)
    if _TCP_QUICKACK is None or handle is None:
        return
    with suppress(OSError, AttributeError):
        handle().setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class _ChannelsFactory(WebSocketClientFactory):
    protocol = _ChannelsProtocol  # type: ignore[assignment]
    channels: KernelChannels
    # Twisted logs "Starting factory"/"Stopping factory" around every connection otherwise: a
    # third of all log lines, once per kernel (re)connection.
    noisy = False


class KernelChannels:
    """The channels websocket of one kernel, reconnected with backoff until L{close}."""

    def __init__(
        self,
        reactor: NetworkReactor,
        url: str,
        headers: dict[str, str],
        on_kernel_message: MessageHandler,
        on_disconnect: Callable[[str], None],
        verify_tls: bool = True,
    ) -> None:
        self._reactor = reactor
        self.session_id = uuid.uuid4().hex
        separator = "&" if "?" in url else "?"
        full_url = f"{url}{separator}session_id={self.session_id}"
        factory = _ChannelsFactory(full_url, headers=headers, protocols=[KERNEL_WS_PROTOCOL])
        factory.channels = self
        factory.setProtocolOptions(tcpNoDelay=True, autoPingInterval=30, autoPingTimeout=20)
        self._service = ClientService(
            _endpoint(reactor, full_url, verify_tls),
            factory,
            retryPolicy=backoffPolicy(initialDelay=0.2, maxDelay=10.0),
            clock=IReactorTime(reactor),
        )
        self._on_kernel_message = on_kernel_message
        self._on_disconnect = on_disconnect
        self._protocol: _ChannelsProtocol | None = None
        self._waiting: list[Deferred[None]] = []
        self._handlers: dict[str, MessageHandler] = {}
        self._closed = False

    def start(self) -> None:
        self._service.startService()

    def wait_open(self, timeout: float) -> Deferred[None]:
        """Fire once the websocket is open; fail with L{GatewayUnavailable} after C{timeout}."""
        if self._closed:
            return _unavailable("This kernel's connection is closed.")
        d: Deferred[None] = Deferred()
        if self._protocol is not None:
            d.callback(None)
            return d
        self._waiting.append(d)

        def timed_out(failure: Failure) -> None:
            if d in self._waiting:
                self._waiting.remove(d)
            if failure.check(DeferredTimeout, CancelledError):
                raise GatewayUnavailable(
                    "The kernel gateway did not answer in time; try again in a moment."
                )
            failure.raiseException()

        d.addTimeout(timeout, IReactorTime(self._reactor))
        d.addErrback(timed_out)
        return d

    def send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any],
        handler: MessageHandler | None = None,
        parent_header: dict[str, Any] | None = None,
    ) -> str:
        """Send a message; C{handler} receives every message whose parent it is. Returns its id."""
        if self._protocol is None:
            raise GatewayUnavailable("The kernel's connection is down; try again in a moment.")
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session_id,
            "username": "jupybot",
            "date": datetime.now(UTC).isoformat(),
            "version": PROTOCOL_VERSION,
        }
        if handler is not None:
            self._handlers[msg_id] = handler
        self._protocol.send_jupyter(channel, header, parent_header or {}, content)
        return msg_id

    def reconnect(self) -> None:
        """Drop the socket so that a new one is opened (new gateway-side streams)."""
        if self._protocol is not None:
            self._protocol.dropConnection(abort=True)

    def forget(self, msg_id: str) -> None:
        self._handlers.pop(msg_id, None)

    def close(self) -> Deferred[None]:
        """Stop reconnecting and close the socket."""
        self._closed = True
        self._handlers.clear()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.errback(GatewayUnavailable("This kernel's connection is closed."))
        return self._service.stopService()

    # Called by the protocol.

    def opened(self, protocol: _ChannelsProtocol) -> None:
        self._protocol = protocol
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.callback(None)

    def received(self, message: Message) -> None:
        parent = message.get("parent_header") or {}
        handler = self._handlers.get(parent.get("msg_id", ""))
        if handler is not None:
            handler(message)
        else:
            self._on_kernel_message(message)

    def closed(self, protocol: _ChannelsProtocol, reason: str) -> None:
        if self._protocol is protocol:
            self._protocol = None
        if not self._closed:
            self._on_disconnect(reason)


def _unavailable(message: str) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    d.errback(GatewayUnavailable(message))
    return d


def _endpoint(reactor: NetworkReactor, url: str, verify_tls: bool) -> IStreamClientEndpoint:
    parsed = urlparse(url)
    secure = parsed.scheme == "wss"
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if secure else 80)
    endpoint = HostnameEndpoint(reactor, host, port)
    if secure:
        options = optionsForClientTLS(host) if verify_tls else CertificateOptions(verify=False)
        return wrapClientTLS(options, endpoint)
    return endpoint


def message_type(message: Message) -> str:
    return str((message.get("header") or {}).get("msg_type") or message.get("msg_type") or "")
