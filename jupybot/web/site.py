"""The twisted.web site: one listening port, /ping, and a root other parts add children to."""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource

from ..config.core import WebConfig
from ..reactor import ListeningReactor
from ..service import Part
from .clients import ProxyTrust, access_log_formatter
from .edges import EdgeFactory, EdgeSite
from .ping import Health, PingResource

__all__ = ["PARTS_START_WAIT", "SiteHealth", "WebPart"]

# How long the site waits for the parts before it to start before it listens anyway (so /ping
# can say which part is stuck). Longer than the embedded gateway's own start timeout (90 s).
PARTS_START_WAIT = 120.0


class SiteHealth(Health, Protocol):
    """The service tree as the site sees it: /ping's answers, and when the parts are up."""

    def started_before(self, part: Part) -> Deferred[None]: ...


class WebPart(Part):
    """Listens on C{web.listen} once every part before it has started or failed; other parts
    C{putChild} on L{root} before it starts."""

    def __init__(self, config: WebConfig, reactor: ListeningReactor, health: SiteHealth) -> None:
        super().__init__("web")
        self.config = config
        self.root = Resource()
        self.root.putChild(b"ping", PingResource(type(reactor).__name__, health))
        self.site = EdgeSite(self.root, config.limits)
        self.site.displayTracebacks = False
        # Access log lines name the visitor, through a trusted proxy too (docs/deploy.md).
        self.site._logFormatter = access_log_formatter(ProxyTrust.of(config))
        self._reactor = reactor
        self._health = health
        self._port: IListeningPort | None = None
        self._stopped = False
        # The listening edge (its refusals are read by /metrics); None until the site listens.
        self.edges: EdgeFactory | None = None

    @property
    def port(self) -> IListeningPort | None:
        return self._port

    def start_part(self) -> Deferred[None]:
        self._stopped = False
        return Deferred.fromCoroutine(self._listen_when_parts_started())

    async def _listen_when_parts_started(self) -> None:
        await self._parts_started()
        if self._stopped:  # stopped while waiting: never listen
            return
        endpoint = serverFromString(self._reactor, self.config.listen)
        self.edges = EdgeFactory(self.site, self.config)
        port = await endpoint.listen(self.edges)
        if not self.running:  # stopped meanwhile
            await port.stopListening()
            return
        self._port = port
        address = port.getHost()
        self.log.info(
            "web: listening on http://{host}:{port}/",
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
        )

    def _parts_started(self) -> Deferred[None]:
        """Every part before the site started or failed, or L{PARTS_START_WAIT} passed."""
        ready: Deferred[bool] = Deferred()  # True: the wait ran out
        timer = self._reactor.callLater(PARTS_START_WAIT, ready.callback, True)

        def started(_: object) -> None:
            if timer.active():
                timer.cancel()
                ready.callback(False)

        self._health.started_before(self).addCallback(started)

        def waited(ran_out: bool) -> None:
            stuck = [name for name, status in self._health.statuses().items()
                     if status == "starting" and name != self.name]  # fmt: skip
            if ran_out and stuck:
                self.log.warn(
                    "web: listening although {parts} still starting after {seconds:g}s",
                    parts=", ".join(stuck),
                    seconds=PARTS_START_WAIT,
                )

        return ready.addCallback(waited)

    def stop_part(self) -> Deferred[None] | None:
        self._stopped = True
        port, self._port = self._port, None
        if port is None:
            return None
        return port.stopListening()
