"""Who is asking (jupybot/web/clients.py): forwarded addresses only from trusted proxies, and
the one Origin rule of the websockets and /contact."""

from __future__ import annotations

import ipaddress

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from jupybot.config import ConfigError, parse_config
from jupybot.config.core import proxy_network
from jupybot.web.clients import (
    Client,
    OriginVerdict,
    ProxyTrust,
    access_log_formatter,
    check_origin,
    client_of_request,
    normalize_origin,
    resolve_client,
)

PROXY = ProxyTrust((ipaddress.ip_network("10.0.0.1/32"),))
PROXIES = ProxyTrust(
    (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("2001:db8:ffff::/48"))
)
FORWARDED = ProxyTrust((ipaddress.ip_network("10.0.0.1/32"),), header="forwarded")


def address(peer: str, trust: ProxyTrust = PROXY, **headers: str) -> str:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return resolve_client(peer, False, named, trust).address


# Spoofing: the headers of a peer that is not trusted say nothing.


@pytest.mark.parametrize(
    "headers",
    [
        {"x_forwarded_for": "203.0.113.9"},
        {"x_forwarded_for": "203.0.113.9, 10.0.0.1"},
        {"forwarded": "for=203.0.113.9"},
        {"x_real_ip": "203.0.113.9"},
    ],
)
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(headers: dict[str, str]) -> None:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    for trust in (PROXY, FORWARDED):
        client = resolve_client("198.51.100.7", False, named, trust)
        assert client.address == "198.51.100.7" and not client.forwarded


def test_nothing_is_trusted_by_default() -> None:
    assert address("10.0.0.1", ProxyTrust(), x_forwarded_for="203.0.113.9") == "10.0.0.1"
    assert address("127.0.0.1", ProxyTrust(), x_forwarded_for="203.0.113.9") == "127.0.0.1"


def test_a_trusted_proxy_names_the_client() -> None:
    client = resolve_client("10.0.0.1", False, {"x-forwarded-for": "203.0.113.9"}, PROXY)
    assert client == Client("203.0.113.9", None, forwarded=True)


def test_a_trusted_proxy_that_names_nobody_is_the_client() -> None:
    assert address("10.0.0.1") == "10.0.0.1"
    assert address("10.0.0.1", x_forwarded_for="") == "10.0.0.1"


def test_what_the_visitor_wrote_left_of_the_proxy_s_hop_is_ignored() -> None:
    # nginx appends the address it saw to whatever the visitor sent.
    assert address("10.0.0.1", x_forwarded_for="10.0.0.77, 203.0.113.9") == "203.0.113.9"
    assert address("10.0.0.1", x_forwarded_for="1.1.1.1, 2.2.2.2, 203.0.113.9") == "203.0.113.9"


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop() -> None:
    assert address("10.0.0.1", PROXIES, x_forwarded_for="6.6.6.6, 203.0.113.9, 10.0.0.2, 10.0.0.3") == "203.0.113.9"  # fmt: skip
    # Every hop trusted: the leftmost is the client (a visitor inside the proxies' network).
    assert address("10.0.0.1", PROXIES, x_forwarded_for="10.0.0.5, 10.0.0.2") == "10.0.0.5"


def test_a_hop_that_is_not_trusted_ends_the_walk_even_if_it_claims_more() -> None:
    # 10.0.0.9 is not in PROXY's network: what it says further left is its own invention.
    assert address("10.0.0.1", x_forwarded_for="203.0.113.9, 10.0.0.9") == "10.0.0.9"


def test_several_header_lines_are_one_list() -> None:
    channel = DummyChannel()
    channel.transport = DummyChannel.TCP(IPv4Address("TCP", "10.0.0.1", 4711))
    request = Request(channel)
    request.requestHeaders.addRawHeader(b"X-Forwarded-For", b"6.6.6.6")
    request.requestHeaders.addRawHeader(b"X-Forwarded-For", b"203.0.113.9")
    assert client_of_request(request, PROXY).address == "203.0.113.9"


def test_the_access_log_line_names_the_visitor() -> None:
    channel = DummyChannel()
    channel.transport = DummyChannel.TCP(IPv4Address("TCP", "10.0.0.1", 4711))
    request = Request(channel)
    request.method, request.uri, request.clientproto = b"GET", b"/ping", b"HTTP/1.1"
    request.requestHeaders.addRawHeader(b"X-Forwarded-For", b"203.0.113.9")
    line = access_log_formatter(PROXY)("[03/Dec/2026:08:00:00 +0000]", request)
    assert line.startswith('"203.0.113.9" - - [03/Dec/2026:08:00:00 +0000] "GET /ping HTTP/1.1"')
    assert access_log_formatter(ProxyTrust())("-", request).startswith('"10.0.0.1" - -')


@pytest.mark.parametrize(
    "garbage",
    ["unknown", "not-an-address", "203.0.113.9:port", "[2001:db8::1", "999.1.1.1", "", " ,"],
)
def test_garbage_ends_the_walk_at_the_last_hop_that_was_believed(garbage: str) -> None:
    assert address("10.0.0.1", x_forwarded_for=garbage) == "10.0.0.1"
    assert address("10.0.0.1", PROXIES, x_forwarded_for=f"203.0.113.9, {garbage}, 10.0.0.2") == "10.0.0.2"  # fmt: skip


@pytest.mark.parametrize(
    ("hop", "client"),
    [
        ("203.0.113.9:4711", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0::0001", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("  203.0.113.9\t", "203.0.113.9"),
    ],
)
def test_hops_are_read_in_every_form_proxies_write_and_normalized(hop: str, client: str) -> None:
    assert address("10.0.0.1", x_forwarded_for=hop) == client


def test_ipv6_proxies_and_ipv4_mapped_peers() -> None:
    assert address("2001:db8:ffff::10", PROXIES, x_forwarded_for="2001:db8:1::5") == "2001:db8:1::5"
    # A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d: still the trusted proxy.
    assert address("::ffff:10.0.0.1", x_forwarded_for="203.0.113.9") == "203.0.113.9"
    # An IPv4 network does not hold IPv6 addresses and the reverse.
    assert address("2001:db8:ffff::10", PROXY, x_forwarded_for="203.0.113.9") == "2001:db8:ffff::10"


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2::a", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
    ],
)
def test_limits_count_an_ipv6_visitor_by_its_64(address: str, key: str) -> None:
    assert Client(address, None).limit_key == key


def test_a_peer_with_no_address_is_never_trusted() -> None:
    # A UNIX socket's peer has no host.
    assert resolve_client(None, False, {"x-forwarded-for": "203.0.113.9"}, PROXY).address == (
        "unknown"
    )


# RFC 7239 Forwarded, when `web.proxy_header` says so.


def test_forwarded_is_read_only_when_configured() -> None:
    assert address("10.0.0.1", FORWARDED, forwarded="for=203.0.113.9") == "203.0.113.9"
    # Configured for X-Forwarded-For: a visitor's own Forwarded passed through is ignored...
    assert address("10.0.0.1", PROXY, forwarded="for=6.6.6.6") == "10.0.0.1"
    # ...and the reverse.
    assert address("10.0.0.1", FORWARDED, x_forwarded_for="6.6.6.6") == "10.0.0.1"


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ("For=192.0.2.60", "192.0.2.60"),
        ("for=6.6.6.6, for=192.0.2.60", "192.0.2.60"),
        ('for=6.6.6.6;host="a,b;c", for=192.0.2.60', "192.0.2.60"),
        ("for=unknown", "10.0.0.1"),
        ("for=_hidden", "10.0.0.1"),
        ("for", "10.0.0.1"),
        ('for="192.0.2.60', "10.0.0.1"),
        ("proto=https", "10.0.0.1"),
        ("for=192.0.2.60;;", "192.0.2.60"),
    ],
)
def test_forwarded_elements(value: str, client: str) -> None:
    assert address("10.0.0.1", FORWARDED, forwarded=value) == client


def test_forwarded_proto_and_host_come_from_the_element_that_named_the_client() -> None:
    client = resolve_client(
        "10.0.0.1",
        False,
        {
            "host": "127.0.0.1:8080",
            "forwarded": 'for=6.6.6.6;proto=http;host=evil.example, for=192.0.2.60;proto=https;host="Example.org"',
        },
        FORWARDED,
    )
    assert client == Client("192.0.2.60", "https://example.org", forwarded=True)


# The site's origin as the visitor sees it.


def test_the_site_origin_is_the_host_header_on_the_connection_s_scheme() -> None:
    assert resolve_client("127.0.0.1", False, {"host": "127.0.0.1:8080"}, PROXY).site_origin == (
        "http://127.0.0.1:8080"
    )
    assert resolve_client("127.0.0.1", True, {"host": "Example.org:443"}, PROXY).site_origin == (
        "https://example.org"
    )
    assert resolve_client("127.0.0.1", False, {}, PROXY).site_origin is None


def test_x_forwarded_proto_counts_only_from_a_trusted_proxy() -> None:
    headers = {"host": "example.org", "x-forwarded-proto": "https"}
    assert resolve_client("10.0.0.1", False, headers, PROXY).site_origin == "https://example.org"
    assert resolve_client("6.6.6.6", False, headers, PROXY).site_origin == "http://example.org"
    # Only http or https; the last one is the proxy's own.
    odd = {"host": "example.org", "x-forwarded-proto": "gopher"}
    assert resolve_client("10.0.0.1", False, odd, PROXY).site_origin == "http://example.org"
    two = {"host": "example.org", "x-forwarded-proto": "http, https"}
    assert resolve_client("10.0.0.1", False, two, PROXY).site_origin == "https://example.org"


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("https://Example.ORG", "https://example.org"),
        ("https://example.org:443", "https://example.org"),
        ("http://example.org:80/", "http://example.org"),
        ("https://example.org:8443", "https://example.org:8443"),
        ("http://[2001:DB8::1]:8080", "http://[2001:db8::1]:8080"),
        ("ftp://example.org", None),
        ("https://", None),
        ("https://user@example.org", None),
        ("https://example.org/page", None),
        ("https://example.org:99999", None),
        ("https://exa mple.org", None),
        ("example.org", None),
    ],
)
def test_origins_are_compared_normalized(text: str, normalized: str | None) -> None:
    assert normalize_origin(text) == normalized


# The one Origin rule.

PAGE = Client("203.0.113.9", "https://example.org")


@pytest.mark.parametrize(
    ("origin", "verdict"),
    [
        (None, OriginVerdict.ABSENT),
        ("https://example.org", OriginVerdict.SAME),
        ("https://EXAMPLE.org:443", OriginVerdict.SAME),
        ("https://portfolio.example", OriginVerdict.LISTED),
        ("https://portfolio.example/", OriginVerdict.LISTED),
        ("null", OriginVerdict.NULL),
        ("http://example.org", OriginVerdict.FOREIGN),  # the same host over plain http
        ("https://example.org:8443", OriginVerdict.FOREIGN),
        ("https://example.org.evil.example", OriginVerdict.FOREIGN),
        ("https://evil.example", OriginVerdict.FOREIGN),
        ("file://", OriginVerdict.FOREIGN),
        ("garbage", OriginVerdict.FOREIGN),
    ],
)
def test_the_origin_rule(origin: str | None, verdict: OriginVerdict) -> None:
    assert check_origin(origin, PAGE, ("https://portfolio.example",)) is verdict
    assert verdict.allowed == (verdict in (OriginVerdict.ABSENT, OriginVerdict.SAME, OriginVerdict.LISTED))  # fmt: skip


def test_without_a_host_only_listed_origins_pass() -> None:
    hostless = Client("203.0.113.9", None)
    assert check_origin("https://example.org", hostless, ()) is OriginVerdict.FOREIGN
    assert check_origin("https://example.org", hostless, ("https://example.org",)) is (
        OriginVerdict.LISTED
    )


def test_behind_a_tls_proxy_the_https_page_is_same_origin_only_if_the_proxy_is_trusted() -> None:
    headers = {"host": "example.org", "x-forwarded-proto": "https", "x-forwarded-for": "1.2.3.4"}
    through_proxy = resolve_client("10.0.0.1", False, headers, PROXY)
    assert check_origin("https://example.org", through_proxy, ()) is OriginVerdict.SAME
    assert check_origin("http://example.org", through_proxy, ()) is OriginVerdict.FOREIGN
    untrusted = resolve_client("10.0.0.1", False, headers, ProxyTrust())
    assert check_origin("https://example.org", untrusted, ()) is OriginVerdict.FOREIGN


# Configuration.


def test_trusted_proxies_are_read_as_networks() -> None:
    config = parse_config(
        "web:\n  trusted_proxies: ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8']\n"
        "  proxy_header: forwarded\n"
    )
    assert config.web.trusted_proxies == tuple(
        ipaddress.ip_network(n) for n in ("127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8")
    )
    assert config.web.proxy_header == "forwarded"
    default = parse_config("web: {}\n")
    assert default.web.trusted_proxies == () and default.web.proxy_header == "x-forwarded-for"


def test_each_mistake_names_its_entry() -> None:

    with pytest.raises(ConfigError) as raised:
        parse_config(
            "web:\n  trusted_proxies: ['10.0.0.1/8', nginx, '10.0.0.0/33', '::1']\n"
            "  proxy_header: x-real-ip\n"
        )
    assert raised.value.errors == [
        "web.trusted_proxies[0]: '10.0.0.1/8' has host bits set: did you mean '10.0.0.0/8'?",
        "web.trusted_proxies[1]: expected an address or a network such as '10.0.0.0/8', got 'nginx'",
        "web.trusted_proxies[2]: expected an address or a network such as '10.0.0.0/8', got '10.0.0.0/33'",
        "web.proxy_header: expected one of 'x-forwarded-for', 'forwarded', got 'x-real-ip'",
    ]


def test_proxy_network_accepts_one_address_as_a_network_of_one() -> None:
    assert proxy_network(" 192.0.2.1 ") == ipaddress.ip_network("192.0.2.1/32")
