"""jupybot behind a real nginx and a real Caddy with TLS, each configured as docs/deploy.md
says: the page, both websockets, /contact, and the per-visitor limits, for visitors on distinct
loopback addresses.

Visitors connect to the proxy from 127.0.0.2, 127.0.0.3, ...; the proxy connects to jupybot
from 127.0.0.1, the one trusted proxy.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import JupybotProcess
from tests.matrix.user import asyncio_test
from tests.peers.caddy import Caddy, running_caddy
from tests.peers.nginx import Certificate, Nginx, proxy_certificate, running_nginx
from tests.terminal.conftest import RawClient

pytestmark = pytest.mark.peers

__all__ = ["proxy_certificate"]  # the session fixture, used here

# nginx's proxy_read_timeout when the configuration does not set it (docs/deploy.md does not).
NGINX_DEFAULT_READ_TIMEOUT = 60.0
SESSIONS_PER_VISITOR = 2
MESSAGES_PER_VISITOR = 2


def config_text(workdir: Path) -> str:
    return (
        "web:\n"
        "  listen: 'tcp:0:interface=127.0.0.1'\n"
        "  title: 'Behind a proxy'\n"
        "  trusted_proxies: ['127.0.0.1']\n"
        "storage:\n"
        f"  path: '{workdir / 'var'}'\n"
        "shutdown:\n"
        "  timeout_seconds: 5\n"
        "programs:\n"
        "  - {name: cat, argv: [cat]}\n"
        "  - {name: bc, argv: [bc, -q]}\n"
        "terminal:\n"
        f"  max_sessions_per_ip: {SESSIONS_PER_VISITOR}\n"
        "contact:\n"
        f"  rate_limit: {MESSAGES_PER_VISITOR}\n"
        "  deliver_to: [file]\n"
    )


class BehindProxy:
    def __init__(
        self,
        workdir: Path,
        server: JupybotProcess,
        proxy: Nginx | Caddy,
        certificate: Certificate,
    ) -> None:
        self.workdir = workdir
        self.server = server
        self.proxy = proxy
        self.tls = ssl.create_default_context(cafile=str(certificate.path))

    @property
    def url(self) -> str:
        return self.proxy.url

    @asynccontextmanager
    async def visitor(self, address: str) -> AsyncIterator[aiohttp.ClientSession]:
        """An HTTP client whose connections to the proxy come from C{address} (127.0.0.x)."""
        connector = aiohttp.TCPConnector(ssl=self.tls, local_addr=(address, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            yield session

    def delivered(self) -> list[dict[str, Any]]:
        path = self.workdir / "var" / "contact-messages.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="session", params=["nginx", "caddy"])
def behind_proxy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    proxy_certificate: Certificate,
) -> Iterator[BehindProxy]:
    """A jupybot with C{request.param} in front of it."""
    workdir = tmp_path_factory.mktemp(f"behind-{request.param}")
    server = JupybotProcess(config_text(workdir), workdir)
    running = running_nginx if request.param == "nginx" else running_caddy
    try:
        server.wait_listening()
        server.wait_for("terminal: running")
        for proxy in running(workdir / request.param, proxy_certificate, server.base_url):
            yield BehindProxy(workdir, server, proxy, proxy_certificate)
    finally:
        server.stop()


async def open_raw(
    visitor: aiohttp.ClientSession,
    site: BehindProxy,
    headers: dict[str, str] | None = None,
    autoping: bool = True,
) -> RawClient:
    ws = await visitor.ws_connect(
        site.url.replace("https://", "wss://") + "/terminal/ws",
        origin=site.url,
        headers=headers,
        autoping=autoping,
    )
    client = RawClient(ws)
    await client.hello(program="cat", cols=80, rows=24)
    await client.frame()
    return client


@asyncio_test
async def test_the_page_is_served_over_https(behind_proxy: BehindProxy) -> None:
    async with (
        behind_proxy.visitor("127.0.0.2") as visitor,
        visitor.get(behind_proxy.url + "/") as page,
    ):
        assert page.status == 200
        assert "Behind a proxy" in await page.text()
        proxy = behind_proxy.proxy
        if isinstance(proxy, Nginx):
            plain = f"http://127.0.0.1:{proxy.http_port}/"
            async with visitor.get(plain, allow_redirects=False) as redirect:
                assert redirect.status == 301
                assert redirect.headers["location"].startswith("https://127.0.0.1/")


@asyncio_test
async def test_the_raw_terminal_works_through_the_proxy_from_the_https_page(
    behind_proxy: BehindProxy,
) -> None:
    async with behind_proxy.visitor("127.0.0.2") as visitor:
        # Origin https://127.0.0.1:<proxy> is the page's own: X-Forwarded-Proto and Host
        # from the trusted proxy say so.
        client = await open_raw(visitor, behind_proxy)
        assert client.ready["program"] == "cat", (client.error, client.output)
        await client.send(b"through the proxy\n")
        await client.until_output(b"through the proxy\r\n")
        await client.ws.close()
        # The same site over plain http is another origin, and another site is refused.
        for origin in (behind_proxy.url.replace("https", "http"), "https://evil.example"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await visitor.ws_connect(
                    behind_proxy.url.replace("https://", "wss://") + "/terminal/ws", origin=origin
                )
            assert refused.value.status == 403


@asyncio_test
async def test_line_mode_works_through_the_proxy(behind_proxy: BehindProxy) -> None:
    async with behind_proxy.visitor("127.0.0.2") as visitor:
        ws = await visitor.ws_connect(
            behind_proxy.url.replace("https://", "wss://") + "/terminal/line"
        )
        await ws.send_json({"event": "initialize", "program": "bc"})
        # bc -q greets with nothing, then answers each line.
        assert await ws.receive_json(timeout=30) == {"event": "output", "output": ""}
        await ws.send_json({"event": "command", "input": "6*7"})
        answer = await ws.receive_json(timeout=30)
        assert answer == {"event": "output", "output": "42\n"}, answer
        await ws.close()


@asyncio_test
async def test_contact_is_accepted_and_delivered_with_the_visitor_s_address(
    behind_proxy: BehindProxy,
) -> None:
    async with behind_proxy.visitor("127.0.0.5") as visitor:
        message = {"name": "Ada", "email": "ada@example.org", "message": "via a proxy"}
        async with visitor.post(
            behind_proxy.url + "/contact", json=message, headers={"Origin": behind_proxy.url}
        ) as response:
            assert response.status == 202, await response.text()
            accepted = await response.json()
    await asyncio.to_thread(
        behind_proxy.server.wait_for,
        rf"contact: message {accepted['id']} delivered to file",
        30,
    )
    [record] = [r for r in behind_proxy.delivered() if r["id"] == accepted["id"]]
    assert record["client_ip"] == "127.0.0.5"
    # The access log names the visitor, not the proxy.
    await asyncio.to_thread(
        behind_proxy.server.wait_for, r'^\S+ \S+ "127\.0\.0\.5" - - .*"POST /contact', 30
    )


@asyncio_test
async def test_each_visitor_has_their_own_session_slots_and_cannot_take_another_s(
    behind_proxy: BehindProxy,
) -> None:
    async with (
        behind_proxy.visitor("127.0.0.3") as first,
        behind_proxy.visitor("127.0.0.4") as second,
        behind_proxy.visitor("127.0.0.6") as spoofer,
    ):
        held = [await open_raw(first, behind_proxy) for _ in range(SESSIONS_PER_VISITOR)]
        assert all(client.ready for client in held)
        over = await open_raw(first, behind_proxy)
        assert over.error is not None and over.error["reason"] == "too-many", over.error
        # Another visitor through the same proxy has slots of their own.
        others = [await open_raw(second, behind_proxy) for _ in range(SESSIONS_PER_VISITOR)]
        assert all(client.ready for client in others), [c.error for c in others]
        # A visitor who claims to be the first one is still themself: their own slots, and the
        # first visitor's sessions are untouched.
        spoofed = await open_raw(spoofer, behind_proxy, {"X-Forwarded-For": "127.0.0.3"})
        assert spoofed.ready and spoofed.error is None, spoofed.error
        for client in held:
            await client.send(b"still mine\n")
            await client.until_output(b"still mine\r\n")
        for client in [*held, *others, spoofed]:
            await client.ws.close()


@asyncio_test
async def test_a_visitor_s_waiting_sessions_make_room_for_them_and_nobody_else(
    behind_proxy: BehindProxy,
) -> None:
    """At the cap, a visitor's own session waiting for a resume is ended to make room; one who
    claims that visitor's address is not that visitor and cannot end it."""
    async with (
        behind_proxy.visitor("127.0.0.11") as owner,
        behind_proxy.visitor("127.0.0.12") as claimant,
    ):
        first, second = [await open_raw(owner, behind_proxy) for _ in range(2)]
        await first.ws.close()
        await second.ws.close()
        # The owner at the cap: the oldest of their waiting sessions makes room.
        third = await open_raw(owner, behind_proxy)
        assert third.ready, third.error
        # The claimant gets slots of their own and, at their cap, ends nothing of the owner's.
        forged = {"X-Forwarded-For": "127.0.0.11", "Forwarded": "for=127.0.0.11"}
        theirs = [await open_raw(claimant, behind_proxy, forged) for _ in range(2)]
        assert all(client.ready for client in theirs), [client.error for client in theirs]
        over = await open_raw(claimant, behind_proxy, forged)
        assert over.error is not None and over.error["reason"] == "too-many", over.error
        # The owner's waiting session is still there to resume.
        ws = await owner.ws_connect(
            behind_proxy.url.replace("https://", "wss://") + "/terminal/ws", origin=behind_proxy.url
        )
        resumed = RawClient(ws)
        await resumed.hello(resume=second.ready["resume"], received=0)
        await resumed.frame()
        assert resumed.ready.get("session") == second.ready["session"], resumed.error
        for client in [third, *theirs, resumed]:
            await client.ws.close()


@asyncio_test
async def test_the_contact_limit_is_per_visitor_and_cannot_be_spoofed(
    behind_proxy: BehindProxy,
) -> None:
    async def post(visitor: aiohttp.ClientSession, **headers: str) -> int:
        message = {"name": "Bo", "email": "bo@example.org", "message": "limit"}
        async with visitor.post(
            behind_proxy.url + "/contact", json=message, headers=headers
        ) as response:
            return response.status

    async with (
        behind_proxy.visitor("127.0.0.7") as first,
        behind_proxy.visitor("127.0.0.8") as second,
        behind_proxy.visitor("127.0.0.9") as spoofer,
    ):
        assert [await post(first) for _ in range(MESSAGES_PER_VISITOR + 1)] == [202] * (
            MESSAGES_PER_VISITOR
        ) + [429]
        assert await post(second) == 202
        # Pretending to be a fresh address does not give a new allowance...
        assert [await post(spoofer) for _ in range(MESSAGES_PER_VISITOR)] == [202] * (
            MESSAGES_PER_VISITOR
        )
        assert await post(spoofer, **{"X-Forwarded-For": "203.0.113.50"}) == 429
        assert await post(spoofer, **{"Forwarded": "for=203.0.113.51"}) == 429
        # ...and blaming another visitor does not use theirs.
        assert await post(second, **{"X-Forwarded-For": "127.0.0.7"}) == 202


@pytest.mark.parametrize("behind_proxy", ["nginx"], indirect=True)
@asyncio_test
async def test_ipv6_visitors_are_counted_by_their_64(behind_proxy: BehindProxy) -> None:
    """A visitor is given a whole /64: each of its addresses is not a new visitor. Sent as the
    trusted proxy (127.0.0.1) forwards them, straight to jupybot."""
    server = behind_proxy.server
    async with aiohttp.ClientSession() as as_the_proxy:

        async def session_of(address: str) -> RawClient:
            ws = await as_the_proxy.ws_connect(
                server.base_url.replace("http://", "ws://") + "/terminal/ws",
                headers={"X-Forwarded-For": address},
            )
            client = RawClient(ws)
            await client.hello(program="cat", cols=80, rows=24)
            await client.frame()
            return client

        async def message_of(address: str) -> int:
            body = {"name": "Six", "email": "six@example.org", "message": "v6"}
            headers = {"X-Forwarded-For": address}
            async with as_the_proxy.post(
                server.base_url + "/contact", json=body, headers=headers
            ) as response:
                return response.status

        held = [await session_of(f"2001:db8:1:2::{n}") for n in range(1, SESSIONS_PER_VISITOR + 1)]
        assert all(client.ready for client in held), [client.error for client in held]
        over = await session_of("2001:db8:1:2:ffff::1")
        assert over.error is not None and over.error["reason"] == "too-many", over.error
        neighbour = await session_of("2001:db8:1:3::1")
        assert neighbour.ready, neighbour.error
        for client in [*held, neighbour]:
            await client.ws.close()

        statuses = [await message_of(f"2001:db8:5:5::{n}") for n in range(1, MESSAGES_PER_VISITOR + 2)]  # fmt: skip
        assert statuses == [202] * MESSAGES_PER_VISITOR + [429]
        assert await message_of("2001:db8:5:6::1") == 202


# Caddy has no read timeout on websockets: nginx only.
@pytest.mark.parametrize("behind_proxy", ["nginx"], indirect=True)
@asyncio_test
async def test_an_idle_terminal_outlives_nginx_s_read_timeout(behind_proxy: BehindProxy) -> None:
    """jupybot's pings (every 30 s) keep nginx, whose proxy_read_timeout counts the time without
    anything from jupybot, from closing a terminal nobody types in."""
    async with behind_proxy.visitor("127.0.0.10") as visitor:
        client = await open_raw(visitor, behind_proxy, autoping=False)
        assert client.ready
        idle_until = time.monotonic() + NGINX_DEFAULT_READ_TIMEOUT + 5
        pings = 0
        # Answered here, so that each receive waits for one frame only (aiohttp's own answering
        # would restart its timeout at every ping).
        while (remaining := idle_until - time.monotonic()) > 0:
            try:
                message = await client.ws.receive(timeout=remaining)
            except TimeoutError:
                break
            assert message.type == aiohttp.WSMsgType.PING, message
            pings += 1
            await client.ws.pong(message.data)
        assert pings >= 2
        await client.send(b"still here\n")
        while b"still here\r\n" not in client.output:
            message = await client.frame()
            if message.type == aiohttp.WSMsgType.PING:
                await client.ws.pong(message.data)
            else:
                assert message.type == aiohttp.WSMsgType.BINARY, message
        await client.ws.close()
