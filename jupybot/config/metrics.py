"""`metrics:`: GET /metrics in the Prometheus text format, on a listener of its own."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ._reader import Reader

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_LISTEN = "tcp:9464:interface=127.0.0.1"
LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class MetricsConfig:
    # Off unless asked for: what a server counts is for its owner only.
    enabled: bool = False
    # A listener apart from web.listen: a reverse proxy in front of the public site then has no
    # /metrics to pass on to the internet.
    listen: str = DEFAULT_LISTEN
    # Peers (addresses or networks) that may read /metrics; everyone else gets 403.
    allow: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in LOOPBACK)

    @classmethod
    def read(cls, r: Reader) -> MetricsConfig:
        default = cls()
        enabled = r.boolean("enabled", default.enabled)
        listen = r.endpoint("listen", default.listen)
        allow = []
        for entry in r.string_list("allow", list(LOOPBACK)):
            try:
                allow.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                r.error(
                    "allow",
                    f"expected addresses or networks such as '10.0.0.5' or "
                    f"'10.0.0.0/24', got {entry!r}",
                )
        r.finish()
        return cls(enabled=enabled, listen=listen, allow=tuple(allow))
