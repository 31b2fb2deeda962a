"""Who is asking: the visitor's address and the site's origin as the visitor sees it.

Behind a reverse proxy every connection comes from the proxy. Only when the connection's peer
is in `web.trusted_proxies` are its forwarding headers believed: the visitor is then the
rightmost hop of the chain that is not itself a trusted proxy (everything left of it was written
by the visitor, who may write anything). From anyone else those headers are ignored, whatever
they say. Which header is read is one setting (`web.proxy_header`), never both: a proxy sets
one and passes the other through as the visitor sent it.

L{resolve_client} and L{check_origin} are pure functions of a peer address, a few headers and
the configuration; the twisted.web and autobahn adapters only gather those.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from twisted.internet.address import IPv4Address
from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IRequest

from ..config.core import IPNetwork, WebConfig

__all__ = [
    "CLIENT_HEADERS",
    "NO_PROXIES",
    "Client",
    "OriginVerdict",
    "ProxyTrust",
    "access_log_formatter",
    "check_origin",
    "client_of_request",
    "normalize_origin",
    "resolve_client",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# What L{resolve_client} reads; the adapters gather these (lower case, repeated lines joined).
CLIENT_HEADERS = ("host", "x-forwarded-for", "x-forwarded-proto", "forwarded")
_SCHEMES = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ProxyTrust:
    """The reverse proxies whose forwarding headers are believed, and which header that is."""

    networks: tuple[IPNetwork, ...] = ()
    header: str = "x-forwarded-for"

    @classmethod
    def of(cls, config: WebConfig) -> ProxyTrust:
        return cls(config.trusted_proxies, config.proxy_header)

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.networks)


NO_PROXIES = ProxyTrust()


@dataclass(frozen=True)
class Client:
    """The visitor as the server knows it."""

    # Every per-address limit and log line uses this: the peer's address, or the one a trusted
    # proxy forwarded.
    address: str
    # The site's origin as the visitor's browser names it (`https://example.org`), or None
    # without a usable Host header.
    site_origin: str | None
    # True when the address came from a trusted proxy's header rather than the connection.
    forwarded: bool = False

    @property
    def limit_key(self) -> str:
        """What per-address limits count: the address, or for IPv6 its /64, which is what one
        household or host is given (as one IPv4 address): otherwise any visitor could take a
        fresh address for every session or message."""
        if ":" not in self.address:  # IPv4 (or no address at all): no need to parse it
            return self.address
        try:
            address = ipaddress.ip_address(self.address)
        except ValueError:
            return self.address
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return self.address


def resolve_client(
    peer: str | None, secure: bool, headers: Mapping[str, str], trust: ProxyTrust
) -> Client:
    """The visitor behind a connection from C{peer} (over TLS if C{secure}) that sent
    C{headers} (lower-case names, repeated lines joined with commas)."""
    peer_address = _address(peer) if peer is not None else None
    scheme = "https" if secure else "http"
    host = headers.get("host")
    address = peer_address
    if trust.trusts(peer_address):
        if trust.header == "forwarded":
            address, proto, forwarded_host = _walk_forwarded(
                peer_address, headers.get("forwarded"), trust
            )
            host = forwarded_host or host
        else:
            address = _walk(peer_address, _split(headers.get("x-forwarded-for")), trust)
            proto = _last(headers.get("x-forwarded-proto"))
        if proto is not None and proto.lower() in _SCHEMES:
            scheme = proto.lower()
    return Client(
        address=(peer or "unknown") if address is None else str(address),
        site_origin=normalize_origin(f"{scheme}://{host.strip()}") if host else None,
        forwarded=address is not None and address != peer_address,
    )


def _walk(peer: IPAddress | None, hops: list[str], trust: ProxyTrust) -> IPAddress | None:
    """From the peer leftwards while the current hop is a trusted proxy: the first one that is
    not, or the last trusted one when the next claim is garbage or there is none."""
    current = peer
    for hop in reversed(hops):
        if not trust.trusts(current):
            break
        claimed = _address(hop)
        if claimed is None:
            break
        current = claimed
    return current


def _walk_forwarded(
    peer: IPAddress | None, value: str | None, trust: ProxyTrust
) -> tuple[IPAddress | None, str | None, str | None]:
    """L{_walk} over RFC 7239 elements: the visitor's address, and the proto and host of the
    element that named it (written by the first trusted proxy, so believed)."""
    elements = _forwarded_elements(value) if value else []
    current, proto, host = peer, None, None
    for element in reversed(elements):
        if not trust.trusts(current):
            break
        if element is None:
            break
        claimed = _address(element.get("for", ""))
        if claimed is None:
            break
        current, proto, host = claimed, element.get("proto"), element.get("host")
    return current, proto, host


def _forwarded_elements(value: str) -> list[dict[str, str] | None]:
    """`Forwarded` split into elements of lower-case parameters; None for one that does not
    parse (quoted strings may hold `,` and `;`)."""
    elements: list[dict[str, str] | None] = []
    for raw in _split_outside_quotes(value, ","):
        element: dict[str, str] | None = {}
        for pair in _split_outside_quotes(raw, ";"):
            name, equals, text = pair.strip().partition("=")
            if not pair.strip():
                continue
            if not equals or not name.strip() or element is None:
                element = None
                break
            unquoted = _unquote(text.strip())
            if unquoted is None:
                element = None
                break
            element[name.strip().lower()] = unquoted
        elements.append(element)
    return elements


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(text: str) -> str | None:
    if not text.startswith('"'):
        return text if text and '"' not in text else None
    if len(text) < 2 or not text.endswith('"'):
        return None
    out: list[str] = []
    inner, escaped = text[1:-1], False
    for char in inner:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)


def _address(text: str) -> IPAddress | None:
    """A hop as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
    `[2001:db8::1]:4711`; None for anything else (`unknown`, obfuscated names, garbage)."""
    text = text.strip()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        text = inside
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split(value: str | None) -> list[str]:
    return value.split(",") if value else []


def _last(value: str | None) -> str | None:
    hops = _split(value)
    return hops[-1].strip() if hops else None


def normalize_origin(text: str) -> str | None:
    """`scheme://host[:port]` in lower case without the scheme's default port, or None if
    C{text} is no http(s) origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if (
        scheme not in _SCHEMES
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or any(char.isspace() for char in text.strip())
    ):
        return None
    if ":" in host:
        host = f"[{host}]"
    suffix = "" if port is None or port == _SCHEMES[scheme] else f":{port}"
    return f"{scheme}://{host}{suffix}"


class OriginVerdict(Enum):
    """What an `Origin` header says of a request (see L{check_origin})."""

    ABSENT = "absent"  # not a browser: nobody can be lured into sending it
    SAME = "same"  # the site's own page
    LISTED = "listed"  # an origin of `web.origins`
    NULL = "null"  # a file:// page, a sandboxed frame, a redirect: says nothing of who asks
    FOREIGN = "foreign"  # any other site

    @property
    def allowed(self) -> bool:
        return self in (OriginVerdict.ABSENT, OriginVerdict.SAME, OriginVerdict.LISTED)


def check_origin(origin: str | None, client: Client, listed: tuple[str, ...]) -> OriginVerdict:
    """The one rule for websockets and POST /contact: no Origin (not a browser), the site's own
    (scheme, host and port as the visitor sees them, through a trusted proxy too) or one of
    C{listed}; C{null} and every other origin are refused."""
    if origin is None:
        return OriginVerdict.ABSENT
    if origin.strip().lower() == "null":
        return OriginVerdict.NULL
    normalized = normalize_origin(origin)
    if normalized is None:
        return OriginVerdict.FOREIGN
    if client.site_origin is not None and normalized == client.site_origin:
        return OriginVerdict.SAME
    if normalized in {normalize_origin(allowed) for allowed in listed}:
        return OriginVerdict.LISTED
    return OriginVerdict.FOREIGN


def client_of_request(request: IRequest, trust: ProxyTrust) -> Client:
    """L{resolve_client} for a twisted.web request; once per request and trust, since a
    resource and the access log line both ask."""
    known = _resolved.get(request)
    if known is not None and known[0] == trust:
        return known[1]
    headers = {}
    for name in CLIENT_HEADERS:
        values = request.requestHeaders.getRawHeaders(name)
        if values:
            headers[name] = ",".join(values)
    peer = getattr(request.getClientAddress(), "host", None)
    client = resolve_client(peer, request.isSecure(), headers, trust)
    _resolved[request] = (trust, client)
    return client


_resolved: WeakKeyDictionary[IRequest, tuple[ProxyTrust, Client]] = WeakKeyDictionary()


class _AsTheVisitor:
    """A request whose client address is the visitor's, for twisted.web's access log line."""

    def __init__(self, request: IRequest, address: str) -> None:
        self._request = request
        self._address = address

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", self._address, 0)

    def __getattr__(self, name: str) -> object:
        return getattr(self._request, name)


def access_log_formatter(trust: ProxyTrust) -> Callable[[str, IRequest], str]:
    """twisted.web's combined access log line, naming the visitor rather than the proxy."""

    def formatter(timestamp: str, request: IRequest) -> str:
        visitor = _AsTheVisitor(request, client_of_request(request, trust).address)
        line: str = combinedLogFormatter(timestamp, visitor)
        return line

    return formatter
