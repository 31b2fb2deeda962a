"""The site's hard edges (jupybot/web/edges.py), attacked on Twisted's fakes and on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import resource
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from jupybot.config.core import WebConfig, WebLimits
from jupybot.web.edges import (
    EdgeFactory,
    EdgeSite,
    connection_cap,
    raise_open_file_limit,
)
from tests.harness import VENV_BIN, ChildProcess
from tests.matrix.user import asyncio_test

LIMITS = WebLimits(
    header_timeout_seconds=10,
    body_timeout_seconds=5,
    max_header_kb=1,
    max_body_kb=2,
    max_connections_per_address=2,
    max_connections=3,
)
PROXY = ipaddress.ip_network("10.9.0.0/16")
CONFIG = WebConfig(listen="tcp:0", origins=(), limits=LIMITS, trusted_proxies=(PROXY,))


class Echo(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"pong"

    def render_PUT(self, request: Request) -> bytes:
        raise RuntimeError("a bug in a resource")

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        body: bytes = request.content.read()
        return b"got " + body


class Client:
    """One connection of a fake peer: bytes in, what the server wrote out."""

    def __init__(self, factory: EdgeFactory, host: str) -> None:
        address: IPv4Address | IPv6Address
        if ":" in host:
            address = IPv6Address("TCP", host, 40000)
        else:
            address = IPv4Address("TCP", host, 40000)
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        self.protocol: Protocol = protocol
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def answer(self) -> bytes:
        written: bytes = self.transport.value()
        return written

    def json_error(self) -> tuple[int, dict[str, Any]]:
        head, _, body = self.answer().partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower()
        return int(head.split()[1]), json.loads(body)

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionError("gone")))


@pytest.fixture
def edge() -> Iterator[tuple[EdgeFactory, Clock]]:
    clock = Clock()
    root = Resource()
    root.putChild(b"echo", Echo())
    site = EdgeSite(root, CONFIG.limits, reactor=clock)
    yield EdgeFactory(site, CONFIG, file_limit=1000), clock


def test_a_trickle_does_not_extend_the_header_deadline(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, clock = edge
    client = Client(factory, "10.0.0.1")
    client.send(b"GET /echo HTTP/1.1\r\n")
    for _ in range(3):  # a byte or a header every 3 s: each would restart an idle timeout
        clock.advance(3)
        client.send(b"X-Slow: y\r\n")
    assert client.answer() == b"" and not client.closing
    clock.advance(1.5)
    code, body = client.json_error()
    assert code == 408 and "10 seconds" in body["error"]
    assert client.closing


def test_an_idle_connection_is_closed_silently_and_a_prompt_one_served(
    edge: tuple[EdgeFactory, Clock],
) -> None:
    factory, clock = edge
    idle = Client(factory, "10.0.0.1")
    prompt = Client(factory, "10.0.0.2")
    clock.advance(9)
    prompt.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert prompt.answer().startswith(b"HTTP/1.1 200") and prompt.answer().endswith(b"pong")
    clock.advance(1)
    assert idle.closing and idle.answer() == b""
    assert not prompt.closing  # its deadline started again when its answer was sent (at 9 s)
    clock.advance(8.9)
    assert not prompt.closing
    clock.advance(0.1)
    assert prompt.closing


def test_a_trickled_body_gets_408_at_the_body_deadline(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, clock = edge
    client = Client(factory, "10.0.0.1")
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    for _ in range(4):
        clock.advance(1)
        client.send(b"x")
    clock.advance(1)
    code, body = client.json_error()
    assert code == 408 and "body" in body["error"]


def test_a_body_in_time_is_served(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, clock = edge
    client = Client(factory, "10.0.0.1")
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    clock.advance(4)
    client.send(b"cde")
    assert client.answer().endswith(b"got abcde")
    clock.advance(5)
    assert not client.closing  # the body deadline died with the body


@pytest.mark.parametrize(
    "head",
    [
        b"GET /echo HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 40) for i in range(40)),
        b"GET /echo HTTP/1.1\r\nCookie: " + b"c" * 65536,  # one 64 KB line, still unfinished
    ],
    ids=["many headers", "one 64 KB header"],
)
def test_headers_above_the_limit_get_431(edge: tuple[EdgeFactory, Clock], head: bytes) -> None:
    factory, _ = edge
    client = Client(factory, "10.0.0.1")
    client.send(head)
    code, body = client.json_error()
    assert code == 431 and "1024 bytes" in body["error"]
    assert client.closing


def test_a_body_above_the_limit_gets_413_before_it_is_read(
    edge: tuple[EdgeFactory, Clock],
) -> None:
    factory, _ = edge
    announced = Client(factory, "10.0.0.1")
    announced.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nabc")
    code, body = announced.json_error()
    assert code == 413 and "2048 bytes" in body["error"] and announced.closing
    chunked = Client(factory, "10.0.0.2")
    chunked.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100):
        chunked.send(b"1000\r\n" + b"x" * 0x1000 + b"\r\n")
        if chunked.closing:
            break
    assert chunked.json_error()[0] == 413


def test_a_chunked_body_within_the_limit_is_served(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, _ = edge
    client = Client(factory, "10.0.0.1")
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    client.send(b"5\r\nhello\r\n0\r\n\r\n")
    assert client.answer().endswith(b"got hello")


def test_malformed_http_is_a_json_400(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, _ = edge
    client = Client(factory, "10.0.0.1")
    client.send(b"GET /echo HTTP/1.1\r\nNo colon here\r\n\r\n")
    assert client.json_error() == (400, {"error": "The request is not valid HTTP."})


def test_a_failing_resource_is_a_json_500_without_a_traceback(
    edge: tuple[EdgeFactory, Clock],
) -> None:
    factory, _ = edge
    logged = EventLoggingObserver()
    globalLogPublisher.addObserver(logged)
    try:
        client = Client(factory, "10.0.0.1")
        client.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    finally:
        globalLogPublisher.removeObserver(logged)
    assert client.json_error() == (500, {"error": "The server failed to answer this request."})
    assert b"a bug" not in client.answer()
    [failure] = [event["log_failure"] for event in logged if "log_failure" in event]
    assert failure.check(RuntimeError)  # the owner's log has it, the visitor does not


def test_connections_are_capped_per_address_and_in_all(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, _ = edge
    first, second = Client(factory, "10.0.0.1"), Client(factory, "10.0.0.1")
    third = Client(factory, "10.0.0.1")
    assert third.json_error()[0] == 429 and third.closing
    assert b"Retry-After: 10" in third.answer()
    other = Client(factory, "10.0.0.2")
    assert other.answer() == b"" and not other.closing
    full = Client(factory, "10.0.0.3")
    assert full.json_error() == (503, {"error": "The server is at its connection limit."})
    first.lose()
    again = Client(factory, "10.0.0.1")
    assert again.answer() == b"" and not again.closing
    assert factory.connections.open == 3
    for client in (second, other, again):
        client.lose()
    assert factory.connections.open == 0 and factory.connections.holding("10.0.0.1") == 0
    assert factory.refusals == {"connections_per_address": 1, "connections": 1}


def test_an_ipv6_64_counts_as_one_address(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, _ = edge
    Client(factory, "2001:db8:1:2::1")
    Client(factory, "2001:db8:1:2:ffff::2")
    third = Client(factory, "2001:db8:1:2:abcd::3")  # any address of the same /64
    assert third.json_error()[0] == 429
    assert factory.connections.holding("2001:db8:1:2::/64") == 2
    other = Client(factory, "2001:db8:1:3::1")
    assert other.answer() == b"" and not other.closing


def test_a_trusted_proxy_meets_only_the_total_cap(edge: tuple[EdgeFactory, Clock]) -> None:
    factory, _ = edge
    proxied = [Client(factory, "10.9.0.1") for _ in range(3)]
    assert all(client.answer() == b"" and not client.closing for client in proxied)
    assert Client(factory, "10.9.0.1").json_error()[0] == 503


def test_the_total_cap_stays_below_the_open_file_limit() -> None:
    assert connection_cap(None, 1024) == 768
    assert connection_cap(100, 1024) == 100
    assert connection_cap(5000, 1024) == 768
    assert connection_cap(None, 524288) == 10_000
    assert connection_cap(50_000, 524288) == 50_000


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
        assert raised == (hard if hard != resource.RLIM_INFINITY else lowered)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# Websockets count: autobahn takes the transport over from the HTTP channel, on a real socket.


class Quiet(WebSocketServerProtocol):
    """Says nothing; tells the test when the server's side of the socket is gone."""

    closed: DeferredQueue[None] = DeferredQueue()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed.put(None)


class RawClient(Protocol):
    """Sends C{request}; C{answered} fires with the first bytes back, C{lost} at the end."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.answered: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if not self.answered.called:
            self.answered.callback(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest_twisted.ensureDeferred
async def test_websockets_count_against_the_caps_until_they_close() -> None:
    root = Resource()
    ws_factory = WebSocketServerFactory()
    ws_factory.protocol = Quiet
    root.putChild(b"ws", WebSocketResource(ws_factory))
    root.putChild(b"echo", Echo())
    factory = EdgeFactory(EdgeSite(root, CONFIG.limits), CONFIG, file_limit=1000)
    port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    try:
        sockets = [RawClient(UPGRADE), RawClient(UPGRADE)]
        for client in sockets:
            await connectProtocol(endpoint, client)
            assert (await client.answered).startswith(b"HTTP/1.1 101")
        refused = RawClient(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        await connectProtocol(endpoint, refused)
        assert (await refused.answered).startswith(b"HTTP/1.1 429")
        await refused.lost
        assert factory.connections.holding("127.0.0.1") == 2
        closed = sockets.pop()
        assert closed.transport is not None
        closed.transport.loseConnection()
        await closed.lost
        await Quiet.closed.get()  # after the edge counted it gone
        assert factory.connections.holding("127.0.0.1") == 1
        served = RawClient(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await connectProtocol(endpoint, served)
        assert (await served.answered).startswith(b"HTTP/1.1 200")
        await served.lost
        for client in sockets:
            assert client.transport is not None
            client.transport.loseConnection()
            await client.lost
    finally:
        await port.stopListening()


# The attack the edges exist for, at a real `twistd jupybot` under a lowered open-file limit.

ATTACK_CONFIG = """
web:
  listen: 'tcp:0:interface=127.0.0.1'
  limits:
    header_timeout_seconds: 2
    max_connections_per_address: 16
storage:
  path: '{workdir}/var'
shutdown:
  timeout_seconds: 5
contact:
  deliver_to: [file]
  rate_limit: 100000
gateway:
  url: http://127.0.0.1:9
programs:
  - {{name: greet, argv: [sh, -c, "echo ready; read name; echo hello $name"]}}
terminal:
  max_sessions_per_ip: 50
"""
# The common `ulimit -n`, and the sandbox's own open-file limit for programs (which it cannot
# set above the hard limit). With the edges: 768 connections in all, 16 per address; the
# attack holds 1,100 without them.
SERVER_FILE_LIMIT = 1024
ATTACK_SOURCES = [f"127.0.0.{n}" for n in range(2, 12)]
SLOTS_PER_SOURCE = 110
TRICKLE_SECONDS = 1.0


class LimitedJupybot(ChildProcess):
    """`twistd -n jupybot` whose hard open-file limit is C{file_limit}."""

    def __init__(self, workdir: Path, file_limit: int) -> None:
        config = workdir / "config.yml"
        config.write_text(ATTACK_CONFIG.format(workdir=workdir))
        twistd = [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "jupybot", "--config", str(config)]
        super().__init__(
            ["prlimit", f"--nofile={file_limit}:{file_limit}", "--", *twistd],
            name="jupybot",
            cwd=workdir,
        )
        match = self.wait_for(r"web: listening on http://([^:/\s]+):(\d+)/", timeout=60)
        self.host, self.port = match.group(1), int(match.group(2))
        self.base_url = f"http://{self.host}:{self.port}"

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class SlowLoris:
    """Connections from C{sources} that each send a request line, then a header a second,
    and start again whenever the server ends one."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stopping = asyncio.Event()
        self.outcomes: Counter[str] = Counter()
        self._tried_slots: set[int] = set()
        self.all_tried = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, sources: list[str], per_source: int) -> None:
        self._wanted = len(sources) * per_source
        for source in sources:
            for _ in range(per_source):
                slot = len(self._tasks)
                self._tasks.append(asyncio.ensure_future(self._slot(slot, source)))

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self._tasks)

    async def _slot(self, slot: int, source: str) -> None:
        while not self.stopping.is_set():
            try:
                outcome = await self._one_connection(slot, source)
            except OSError as e:  # TimeoutError included: a server that no longer accepts
                self._tried(slot)
                outcome = type(e).__name__
            self.outcomes[outcome] += 1
            # Pacing between attempts (ended early by stop()); a refused slot waits longer, so
            # that the attack spends its CPU time on connections the server let in.
            await self._pause(0.5 if outcome == "HTTP/1.1 408" else 2.0)

    async def _one_connection(self, slot: int, source: str) -> str:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, local_addr=(source, 0)), 5
        )
        self._tried(slot)
        try:
            writer.write(b"GET /ping HTTP/1.1\r\n")
            while not self.stopping.is_set():
                try:
                    answer = await asyncio.wait_for(reader.read(64), TRICKLE_SECONDS)
                except TimeoutError:
                    writer.write(b"X-Slow: y\r\n")
                    continue
                return answer[:12].decode("latin-1") if answer else "closed"
            return "held to the end"
        finally:
            writer.close()

    def _tried(self, slot: int) -> None:
        """Once every slot has connected, or failed to, L{all_tried} is set."""
        self._tried_slots.add(slot)
        if len(self._tried_slots) == self._wanted:
            self.all_tried.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)


async def visit(http: aiohttp.ClientSession, server: LimitedJupybot, number: int) -> None:
    """What a visitor does: /ping, a contact message, a terminal session; each within 10 s."""
    async with asyncio.timeout(10):
        async with http.get(server.base_url + "/ping") as response:
            assert "services" in await response.json()
    async with asyncio.timeout(10):
        contact = {"name": "Ada", "email": "ada@example.org", "message": f"visit {number}"}
        async with http.post(server.base_url + "/contact", json=contact) as response:
            assert response.status == 202
    async with asyncio.timeout(10):
        url = server.base_url.replace("http://", "ws://") + "/terminal/ws"
        async with http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"program": "greet", "cols": 80, "rows": 24}))
            output = b""
            while b"ready" not in output or b"hello ada" not in output:
                message = await ws.receive()
                assert message.type == aiohttp.WSMsgType.BINARY, (message, output)
                frame: bytes = message.data
                if frame[0] == 0x10:
                    output += frame[1:]
                if b"ready" in output and b"ada" not in output:
                    await ws.send_bytes(b"\x00ada\n")


@pytest.mark.peers
@asyncio_test
async def test_slow_clients_cannot_take_the_server_from_a_visitor(tmp_path: Path) -> None:
    # This process holds every attacking connection: it needs more than the server is given.
    if raise_open_file_limit() < 2 * SERVER_FILE_LIMIT:
        pytest.skip(f"the hard open-file limit is below {2 * SERVER_FILE_LIMIT}")
    server = LimitedJupybot(tmp_path, SERVER_FILE_LIMIT)
    attack = SlowLoris(server.host, server.port)
    try:
        server.wait_for("contact: running")
        async with aiohttp.ClientSession() as http:
            await visit(http, server, 0)  # everything opened lazily is open now
        baseline = server.open_fds()

        attack.start(ATTACK_SOURCES, SLOTS_PER_SOURCE)
        await asyncio.wait_for(attack.all_tried.wait(), 30)
        loop = asyncio.get_running_loop()
        # Two header deadlines at least, so the slots that were let in have been cut and retried.
        until = loop.time() + 5
        visits = 0
        while loop.time() < until or visits < 3:
            visits += 1
            async with aiohttp.ClientSession() as http:
                await visit(http, server, visits)
        await attack.stop()

        assert attack.outcomes["HTTP/1.1 408"] >= 100, attack.outcomes
        assert attack.outcomes["HTTP/1.1 429"] >= 100, attack.outcomes
        assert "Too many open files" not in server.output()
        # The fd table tells nobody when it shrinks: read it until it is back, 15 s at most.
        deadline = loop.time() + 15
        while server.open_fds() > baseline and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert server.open_fds() <= baseline
    finally:
        if not attack.stopping.is_set():
            await attack.stop()
        server.stop()
