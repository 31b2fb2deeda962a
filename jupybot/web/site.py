"""The twisted.web site: one listening port, /ping, and a root other parts add children to."""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from .. import __version__
from ..config.core import WebConfig
from ..reactor import Reactor
from ..service import Part


class PingResource(Resource):
    """GET /ping: is the server up, on which reactor, and how is each part doing."""

    isLeaf = True

    def __init__(
        self,
        reactor_name: str,
        statuses: Callable[[], dict[str, str]],
        details: Callable[[], dict[str, str]] = dict,
    ) -> None:
        super().__init__()
        self._reactor_name = reactor_name
        self._statuses = statuses
        self._details = details

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {
            "status": "ok",
            "version": __version__,
            "reactor": self._reactor_name,
            "services": self._statuses(),
            "details": self._details(),
        }
        return json.dumps(body).encode()


class WebPart(Part):
    """Listens on C{web.listen}; other parts C{putChild} on L{root} before it starts."""

    def __init__(
        self,
        config: WebConfig,
        reactor: Reactor,
        statuses: Callable[[], dict[str, str]],
        details: Callable[[], dict[str, str]] = dict,
    ) -> None:
        super().__init__("web")
        self.config = config
        self.root = Resource()
        self.root.putChild(b"ping", PingResource(type(reactor).__name__, statuses, details))
        self.site = Site(self.root)
        self.site.displayTracebacks = False
        self._reactor = reactor
        self._port: IListeningPort | None = None

    @property
    def port(self) -> IListeningPort | None:
        return self._port

    def start_part(self) -> Deferred[None]:
        endpoint = serverFromString(self._reactor, self.config.listen)
        d: Deferred[IListeningPort] = endpoint.listen(self.site)

        def listening(port: IListeningPort) -> None:
            self._port = port
            address = port.getHost()
            self.log.info(
                "web: listening on http://{host}:{port}/",
                host=getattr(address, "host", address),
                port=getattr(address, "port", ""),
            )

        return d.addCallback(listening)

    def stop_part(self) -> Deferred[None] | None:
        port, self._port = self._port, None
        if port is None:
            return None
        return port.stopListening()
