"""A TCP proxy in front of a gateway that records every byte jupybot sends it (what reaches it)."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.portforward import ProxyFactory, ProxyServer


class _RecordingServer(ProxyServer):
    factory: RecordingProxy

    def dataReceived(self, data: bytes) -> None:
        self.factory.sent.append(data)
        super().dataReceived(data)


class RecordingProxy(ProxyFactory):
    """Listens on a loopback port; forwards to C{url}'s host and port, recording the client's
    bytes in C{sent}: the REST requests and the websockets' handshakes as they are written (the
    websocket frames a client sends are masked, so this sees no text in them)."""

    protocol = _RecordingServer

    def __init__(self, gateway_url: str) -> None:
        scheme, rest = gateway_url.split("://", 1)
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.rpartition(":")
        super().__init__(host, int(port))
        self.sent: list[bytes] = []
        # portforward's factory is typed more loosely than listenTCP wants.
        self._port: IListeningPort = reactor.listenTCP(0, cast(Any, self), interface="127.0.0.1")
        address = cast(IPv4Address, self._port.getHost())
        self.url = f"{scheme}://127.0.0.1:{address.port}" + (f"/{path}" if path else "")

    def received(self) -> bytes:
        return b"".join(self.sent)

    def close(self) -> None:
        self._port.stopListening()
