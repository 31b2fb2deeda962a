"""Hard edges of the site: what one slow or greedy client may hold of it.

Twisted's own idle timeout restarts with every byte, so a client sending one byte every few
seconds keeps a connection (and a file descriptor) for ever, and nothing stops one address from
opening a thousand of them: under the common `ulimit -n 1024` that ends in EMFILE for everyone.
Here, in the style of L{twisted.protocols.policies}:

 - L{EdgeChannel}, the channel of L{EdgeSite}: the request line and headers must have arrived
   within a deadline counted from when the server started waiting for them, and the body within
   another counted from the end of the headers; bytes do not extend either. Headers larger than
   the limit are answered 431, a body larger than its limit 413 before it is read (twisted.web
   would spool it to a temporary file), a chunk whose size line announces more than that limit
   400 as soon as the line is read (not after the body deadline); every error the channel
   answers itself is JSON, and so are the site's own answers (L{JsonErrorRequest}, errors.py):
   an unknown path (404), a method a resource does not take (405 with C{Allow}) or one HTTP
   does not have (501), a resource that failed (500). No HTML page, no traceback.
 - L{EdgeFactory}, wrapped around the site: a cap on open connections per address and in all,
   the total kept below the open-file limit; websockets count, since autobahn takes over the
   transport this factory wraps.
"""

from __future__ import annotations

import ipaddress
import json
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ..config.core import WebConfig, WebLimits
from .clients import ProxyTrust
from .errors import JsonErrorRequest

__all__ = [
    "ConnectionCounter",
    "EdgeChannel",
    "EdgeFactory",
    "EdgeSite",
    "JsonErrorRequest",
    "connection_cap",
    "raise_open_file_limit",
]

log = Logger()

# After answering a client that broke a limit, how long its socket may take to drain before it
# is aborted (a client that does not read would otherwise hold it).
ABORT_AFTER_SECONDS = 5.0
# systemd grants services a hard open-file limit of 524288: three quarters of that would be no
# cap for a small server's memory (some 20 KB a connection), so an unset cap stops here.
AUTO_CONNECTIONS_CEILING = 10_000
# A chunked body's size lines and CRLFs, beyond its data, tolerated before it is refused.
CHUNKED_FRAMING_BYTES = 64 * 1024
# A refusal log line at most this often, with how many there were meanwhile.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def open_file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(configured: int | None, file_limit: int) -> int:
    """The total connection cap: three quarters of C{file_limit} at most, since the rest is
    needed for sessions' PTYs, kernels, databases and logs (and to accept and refuse); when not
    configured, also at most L{AUTO_CONNECTIONS_CEILING}."""
    ceiling = max(1, file_limit * 3 // 4)
    if configured is None:
        return min(ceiling, AUTO_CONNECTIONS_CEILING)
    return min(configured, ceiling)


def http_error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> bytes:  # fmt: skip
    """A complete HTTP/1.1 answer with a JSON error, after which the connection closes."""
    body = json.dumps({"error": message}).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class EdgeChannel(HTTPChannel):
    """An HTTP channel whose header and body deadlines a trickle cannot extend.

    Waiting for a request's head (connection opened, or the previous answer sent): the request
    line and headers must arrive within C{header_timeout_seconds}, else 408 (or, if nothing of
    the request came, a silent close of an idle connection). Then the body within
    C{body_timeout_seconds}. No deadline runs while the site handles a request. Uses the site's
    clock (C{callLater}, as Twisted's own timeout does).
    """

    callLater: Callable[..., IDelayedCall]

    def __init__(self, limits: WebLimits) -> None:
        super().__init__()
        self._limits = limits
        self._max_head = limits.max_header_kb * 1024
        self._max_body = limits.max_body_kb * 1024
        self._body_bytes = 0
        # A chunked body's data so far (its framing not counted).
        self._chunked_data = 0
        # LineReceiver drops, unanswered, a line longer than this; lineLengthExceeded answers.
        self.MAX_LENGTH = self._max_head
        # Twisted's own check answers 400; ours (CRLFs counted) fires first.
        self.totalHeadersSize = self._max_head * 2
        self._deadline: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._head_bytes = 0
        self._awaiting_head = False
        # The head has come and a body follows: its deadline starts once this read is done.
        self._body_due = False
        self._closing = False

    # The request's life.

    def connectionMade(self) -> None:
        super().connectionMade()
        self._await_head()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self._awaiting_head and data:
            self._head_bytes = max(self._head_bytes, 1)
        super().dataReceived(data)
        if self._body_due and not self._closing:
            # The body did not come with the head: it has its deadline from now on (set here
            # rather than at the head's end, where most bodies would cancel it at once).
            self._body_due = False
            seconds = self._limits.body_timeout_seconds
            self._deadline = self.callLater(seconds, self._body_too_slow, seconds)

    def lineReceived(self, line: bytes) -> None:
        if self._closing:
            return
        if self._awaiting_head:
            self._head_bytes += len(line) + 2
            if self._head_bytes > self._max_head:
                self._refuse_head()
                return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse_head()

    def allHeadersReceived(self) -> None:
        self._awaiting_head = False
        self._cancel_deadline()
        if self.length is not None and self.length > self._max_body:
            self._refuse_body()
            return
        self._body_bytes = 0
        self._chunked_data = 0
        decoder = self._transferDecoder
        if self.length is None and decoder is not None:  # chunked: its data is counted
            deliver = decoder.dataCallback

            def counted(data: bytes) -> None:
                self._chunked_data += len(data)
                deliver(data)

            decoder.dataCallback = counted
        super().allHeadersReceived()
        self._body_due = self.length != 0  # a body follows (None: chunked)

    def rawDataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._handlingRequest:  # the body (chunked, or as long as announced)
            self._body_bytes += len(data)
            if self.length is None and self._body_bytes > self._max_body + CHUNKED_FRAMING_BYTES:
                self._refuse_body()
                return
        super().rawDataReceived(data)
        if not self._closing and self.length is None:
            self._check_chunk_size()

    def _check_chunk_size(self) -> None:
        """A chunk announcing more than the body may hold is refused as soon as its size line
        is read: waiting for 2 GiB that will be refused anyway would hold the connection
        until the body deadline."""
        decoder = self._transferDecoder
        if decoder is None or getattr(decoder, "state", None) != "BODY":
            return
        announced = self._chunked_data + decoder.length
        if announced > self._max_body:
            message = (
                f"A chunk of the request's body would bring it to {announced} bytes, over the "
                f"limit of {self._max_body}."
            )
            self._answer_and_close(http_error(400, "Bad Request", message))

    def allContentReceived(self) -> None:
        self._body_due = False
        self._cancel_deadline()
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        # Armed before the parent replays pipelined bytes, which may hold the next whole head.
        if self.persistent:
            self._await_head()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_deadline()
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        super().connectionLost(reason)

    # Deadlines and refusals.

    def _await_head(self) -> None:
        self._cancel_deadline()
        self._awaiting_head = True
        self._head_bytes = 0
        seconds = self._limits.header_timeout_seconds
        self._deadline = self.callLater(seconds, self._head_too_slow, seconds)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _head_too_slow(self, seconds: float) -> None:
        self._deadline = None
        if self._head_bytes == 0:  # an idle keep-alive connection: nothing to answer
            self._close()
            return
        message = f"The request's headers did not arrive within {seconds:g} seconds."
        self._answer_and_close(http_error(408, "Request Timeout", message))

    def _body_too_slow(self, seconds: float) -> None:
        self._deadline = None
        message = f"The request's body did not arrive within {seconds:g} seconds."
        self._answer_and_close(http_error(408, "Request Timeout", message))

    def _refuse_head(self) -> None:
        message = f"The request line and headers are larger than {self._max_head} bytes."
        self._answer_and_close(http_error(431, "Request Header Fields Too Large", message))

    def _refuse_body(self) -> None:
        message = f"The request's body is larger than {self._max_body} bytes."
        self._answer_and_close(http_error(413, "Content Too Large", message))

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's malformed-request answer (a bare 400), as JSON.
        self._answer_and_close(http_error(400, "Bad Request", "The request is not valid HTTP."))

    def _answer_and_close(self, answer: bytes) -> None:
        if self._closing or self.transport is None:
            return
        self.transport.write(answer)
        self._close()

    def _close(self) -> None:
        if self._closing or self.transport is None:
            return
        self._closing = True
        self._cancel_deadline()
        self.setTimeout(None)
        transport: Any = self.transport  # a TCP transport, or the TLS or edge wrapper
        self.loseConnection()
        self._abort = self.callLater(ABORT_AFTER_SECONDS, transport.abortConnection)


@dataclass(frozen=True)
class Refusal:
    """Why a connection was refused: the cap's name (for /metrics), the answer."""

    limit: str
    status: int
    reason: str
    message: str


PER_ADDRESS = Refusal(
    "connections_per_address", 429, "Too Many Requests", "Too many connections from your address."
)
SERVER_FULL = Refusal(
    "connections", 503, "Service Unavailable", "The server is at its connection limit."
)


class ConnectionCounter:
    """Open connections per address and in all; says why one more would be refused."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._by_address: dict[str, int] = {}
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def holding(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def refusal(self, address: str, capped: bool = True) -> Refusal | None:
        """None if C{address} may open one more; else why not. An address not C{capped} (a
        trusted proxy, speaking for many visitors) meets only the total."""
        if capped and self._by_address.get(address, 0) >= self.per_address:
            return PER_ADDRESS
        if self._open >= self.total:
            return SERVER_FULL
        return None

    def opened(self, address: str) -> None:
        self._by_address[address] = self._by_address.get(address, 0) + 1
        self._open += 1

    def closed(self, address: str) -> None:
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]
        self._open -= 1


class _Refused(Protocol):
    """Answers a refused connection at once and closes it (its request is never read)."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._answer)
        self.transport.loseConnection()


class EdgeSite(Site):
    """A site whose channels are L{EdgeChannel}s with C{limits}, and whose own error answers
    are JSON (L{JsonErrorRequest}). C{reactor} is the clock of the channels' deadlines."""

    requestFactory = JsonErrorRequest

    def __init__(
        self, resource: Resource, limits: WebLimits, reactor: IReactorTime | None = None
    ) -> None:
        # Nothing here reads request.args from a body, and twisted.web's parse of every POST's
        # Content-Type (email.headerregistry) cost a seventh of POST /contact's time.
        super().__init__(resource, reactor=reactor, parsePOSTFormSubmission=False)
        self.limits = limits

    # Site's own is an HTTP/2-or-1.1 chooser, typed as returning that chooser; 1.1 is all here.
    def protocol(self) -> EdgeChannel:  # type: ignore[override]
        """A channel for one connection (L{Site.buildProtocol} then attaches it to the site)."""
        return EdgeChannel(self.limits)


class EdgeFactory(WrappingFactory):
    """Wraps C{site}: caps open connections per address and in all, as C{config.limits} says.

    The per-address cap does not apply to C{web.trusted_proxies}: behind one, every visitor
    is the proxy's address (the per-visitor limits of the parts read its forwarding header).
    C{file_limit} (the soft RLIMIT_NOFILE by default) bounds the total cap; see
    L{connection_cap}. The site's reactor is the clock for the deadlines and the refusal log.
    """

    def __init__(self, site: EdgeSite, config: WebConfig, file_limit: int | None = None) -> None:
        super().__init__(site)
        limits = config.limits
        self._proxies = ProxyTrust.of(config)
        limit = open_file_limit() if file_limit is None else file_limit
        total = connection_cap(limits.max_connections, limit)
        if limits.max_connections is not None and total < limits.max_connections:
            log.warn(
                "web: limits.max_connections {wanted} lowered to {total} (3/4 of the open-file "
                "limit {limit})",
                wanted=limits.max_connections,
                total=total,
                limit=limit,
            )
        self.connections = ConnectionCounter(limits.max_connections_per_address, total)
        # Connections refused since start, by cap (PER_ADDRESS.limit, SERVER_FULL.limit).
        self.refusals = {PER_ADDRESS.limit: 0, SERVER_FULL.limit: 0}
        self._clock: IReactorTime = site.reactor
        self._addresses: dict[ProtocolWrapper, str] = {}
        self._refused_since_log = 0
        self._last_refusal_log: float | None = None

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:  # type: ignore[override]
        host = getattr(addr, "host", None)
        address = _address_key(host) if host is not None else type(addr).__name__
        refusal = self.connections.refusal(address, capped=not self._is_proxy(host))
        if refusal is None:
            wrapper = super().buildProtocol(addr)
            if wrapper is not None:
                self._addresses[wrapper] = address
            return wrapper
        self.refusals[refusal.limit] += 1
        self._log_refusal(address, refusal.message)
        answer = http_error(refusal.status, refusal.reason, refusal.message, {"Retry-After": "10"})
        return _Refused(answer)

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        super().registerProtocol(p)
        self.connections.opened(self._addresses[p])

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        self.connections.closed(self._addresses.pop(p))

    def _is_proxy(self, host: str | None) -> bool:
        try:
            return host is not None and self._proxies.trusts(ipaddress.ip_address(host))
        except ValueError:  # not an IP address
            return False

    def _log_refusal(self, address: str, message: str) -> None:
        now = self._clock.seconds()
        self._refused_since_log += 1
        last = self._last_refusal_log
        if last is None or now - last >= REFUSAL_LOG_INTERVAL_SECONDS:
            log.warn(
                "web: refused {count} connection(s) (latest from {address}: {message}); "
                "{open} open of {total}",
                count=self._refused_since_log,
                address=address,
                message=message,
                open=self.connections.open,
                total=self.connections.total,
            )
            self._refused_since_log = 0
            self._last_refusal_log = now


def _address_key(host: str) -> str:
    """Whose connections count together: an IPv4 address, or an IPv6 /64 (one household or
    one server is given a whole /64, and may pick any address in it)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return host
