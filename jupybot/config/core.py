"""The sections every jupybot has: web site, state directory, logging, shutdown."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ._reader import Reader

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Where a trusted proxy says who the visitor is (docs/deploy.md).
PROXY_HEADERS = ("x-forwarded-for", "forwarded")

DEFAULT_TITLE = "Try my programs"
DEFAULT_INTRO = "Pick one: it runs on this server, in your browser, nothing to install."


@dataclass(frozen=True)
class WebLimits:
    """What one client may hold of the site (`web.limits`); see jupybot/web/edges.py."""

    # From the moment the server waits for a request (connection opened, previous answer sent),
    # the request line and every header must have arrived within this; a trickle cannot extend it.
    header_timeout_seconds: float = 20.0
    # Once the headers are in, the whole body must have arrived within this.
    body_timeout_seconds: float = 30.0
    # Request line and headers together; larger is answered 431.
    max_header_kb: int = 16
    # Any request's body; larger is answered 413 before it is read (POST /contact has its own,
    # smaller limit: contact.max_body_kb).
    max_body_kb: int = 1024
    # Open connections (websockets included) from one address, and in all. None: three quarters
    # of the open-file limit, at most 10,000 (never more than 3/4: the rest is for sessions,
    # kernels, files).
    max_connections_per_address: int = 32
    max_connections: int | None = None

    @classmethod
    def read(cls, r: Reader) -> WebLimits:
        default = cls()
        # Left out or 0: sized from the open-file limit when the site starts listening.
        total = r.integer("max_connections", 0, minimum=0) or None
        limits = cls(
            header_timeout_seconds=r.number(
                "header_timeout_seconds", default.header_timeout_seconds, minimum=0.1, maximum=3600
            ),
            body_timeout_seconds=r.number(
                "body_timeout_seconds", default.body_timeout_seconds, minimum=0.1, maximum=3600
            ),
            max_header_kb=r.integer(
                "max_header_kb", default.max_header_kb, minimum=1, maximum=1024
            ),
            max_body_kb=r.integer(
                "max_body_kb", default.max_body_kb, minimum=1, maximum=1024 * 1024
            ),
            max_connections_per_address=r.integer(
                "max_connections_per_address", default.max_connections_per_address, minimum=1
            ),
            max_connections=total,
        )
        r.finish()
        return limits


@dataclass(frozen=True)
class WebConfig:
    """The HTTP site that serves /ping, the terminal page and websockets, and /contact."""

    listen: str
    # Origins of the portfolio site(s) allowed to open websockets and POST /contact.
    # Empty: same origin only.
    origins: tuple[str, ...]
    # The page's heading and the text under it (plain text; a blank line starts a paragraph,
    # addresses become links).
    title: str = DEFAULT_TITLE
    intro: str = DEFAULT_INTRO
    limits: WebLimits = WebLimits()
    # Reverse proxies in front of jupybot: only from these is the visitor's address read from
    # `proxy_header` (and the scheme from X-Forwarded-Proto or Forwarded's proto).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    proxy_header: str = "x-forwarded-for"

    @classmethod
    def read(cls, r: Reader) -> WebConfig:
        listen = r.endpoint("listen", "tcp:8080:interface=127.0.0.1")
        origins = []
        for origin in r.string_list("origins"):
            if r.url_like(origin):
                origins.append(origin.rstrip("/"))
            else:
                r.error(
                    "origins", f"expected origins such as 'https://example.org', got {origin!r}"
                )
        title = r.string("title", DEFAULT_TITLE).strip()
        if not title:
            r.error("title", "must not be empty (it is the page's heading)")
        intro = r.string("intro", DEFAULT_INTRO).strip()
        limits = WebLimits.read(r.section("limits"))
        trusted = []
        for index, entry in enumerate(r.string_list("trusted_proxies")):
            try:
                trusted.append(proxy_network(entry))
            except ValueError as e:
                r.error(f"trusted_proxies[{index}]", str(e))
        proxy_header = r.choice("proxy_header", "x-forwarded-for", PROXY_HEADERS)
        r.finish()
        return cls(
            listen=listen,
            origins=tuple(origins),
            title=title,
            intro=intro,
            limits=limits,
            trusted_proxies=tuple(trusted),
            proxy_header=proxy_header,
        )


def proxy_network(text: str) -> IPNetwork:
    """An address (a network of one) or a CIDR network, or ValueError saying what is wrong."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        if "has host bits set" not in str(e):
            raise ValueError(
                f"expected an address or a network such as '10.0.0.0/8', got {text!r}"
            ) from None
        network = ipaddress.ip_network(text.strip(), strict=False)
        raise ValueError(f"{text!r} has host bits set: did you mean '{network}'?") from None


@dataclass(frozen=True)
class StorageConfig:
    """Where jupybot keeps what it persists (SQLite databases, tokens, crypto stores)."""

    path: str

    @classmethod
    def read(cls, r: Reader) -> StorageConfig:
        path = r.string("path", "./var")
        r.finish()
        return cls(path=path)


@dataclass(frozen=True)
class LoggingConfig:
    format: str
    level: str

    @classmethod
    def read(cls, r: Reader) -> LoggingConfig:
        log_format = r.choice("format", "text", ("text", "json"))
        level = r.choice("level", "info", ("debug", "info", "warn", "error"))
        r.finish()
        return cls(format=log_format, level=level)


@dataclass(frozen=True)
class ShutdownConfig:
    """How long each part may take to stop before jupybot moves on to the next."""

    timeout_seconds: float

    @classmethod
    def read(cls, r: Reader) -> ShutdownConfig:
        timeout = r.number("timeout_seconds", 10.0, minimum=0.1, maximum=600)
        r.finish()
        return cls(timeout_seconds=timeout)
