"""GET /metrics: off by default, its own listener, loopback (or metrics.allow) only, and what it
counts is what visitors and chat users did, read from a real `twistd jupybot`."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.web.test.requesthelper import DummyRequest

from jupybot import __version__
from jupybot.app import build_service
from jupybot.commands import (
    AccessPolicy,
    Addressing,
    ChatCommands,
    ChatLimits,
    ChatNetwork,
    ChatRules,
    IncomingMessage,
)
from jupybot.config import ConfigError, parse_config
from jupybot.kernels import ExecutionResult
from jupybot.metrics import MetricSources, MetricsPart, MetricsResource, metrics_registry
from tests.commands.fakes import FakeConversation
from tests.commands.fakes import FakeKernels as FakeKernelManager
from tests.harness import JupybotProcess, descendants, jupybot_config
from tests.matrix.user import asyncio_test
from tests.terminal.conftest import raw

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

SERVER = """
gateway:
  url: 'http://127.0.0.1:1'
programs:
  - {name: cat, argv: [cat]}
  - {name: sh, argv: [sh]}
  - {name: crash, argv: [sh, -c, "exit 3"]}
  - {name: broken, argv: [/opt/nowhere/game]}
  - {name: slow, argv: [sleep, '60'], limits: {session_seconds: 1}}
terminal:
  max_sessions_per_ip: 1
contact:
  rate_limit: 1
metrics:
  enabled: true
  listen: 'tcp:0:interface=127.0.0.1'
  allow: ['127.0.0.1/32']
"""


class BuildOnlyReactor(MemoryReactorClock):
    """Twisted's MemoryReactorClock with the rest of what the composition root is handed: these
    tests build the service tree without starting it, so nothing spawns or calls from a thread."""

    def spawnProcess(self, *args: object, **kwargs: object) -> IProcessTransport:
        raise AssertionError("the service tree was started")

    def callFromThread(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the service tree was started")


def samples(text: str) -> Samples:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: Samples, name: str, **labels: str) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JupybotProcess, str]]:
    workdir = tmp_path_factory.mktemp("metrics")
    web = "  limits: {max_connections_per_address: 4}\n"
    process = JupybotProcess(jupybot_config(workdir, SERVER, web=web), workdir)
    try:
        process.wait_listening()
        match = process.wait_for(r"metrics: serving (http://[^/\s]+/metrics)")
        process.wait_for("terminal: running")
        yield process, match.group(1)
    finally:
        process.stop()


async def scrape(url: str, source: str = "127.0.0.1") -> tuple[int, str, str]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as response:
        return response.status, response.headers["content-type"], await response.text()


@pytest.mark.peers
@asyncio_test
async def test_sessions_by_program_and_the_refusal_at_the_per_address_cap(
    server: tuple[JupybotProcess, str],
) -> None:
    process, metrics_url = server
    async with aiohttp.ClientSession() as http:
        client = await raw(http, process)
        await client.hello(program="cat", cols=80, rows=24)
        await client.frame()
        assert client.ready["program"] == "cat"
        status, content_type, text = await scrape(metrics_url)
        assert status == 200 and content_type.startswith("text/plain; version=")
        scrape_1 = samples(text)
        assert value(scrape_1, "jupybot_terminal_sessions", program="cat") == 1
        assert value(scrape_1, "jupybot_terminal_sessions", program="sh") == 0
        assert value(scrape_1, "jupybot_part_up", part="terminal") == 1
        assert value(scrape_1, "jupybot_info", version=_version()) == 1
        # One session per address here, and the first is in use: the second is refused.
        second = await raw(http, process)
        await second.hello(program="sh", cols=80, rows=24)
        await second.until_closed()
        assert second.error is not None and second.error["reason"] == "too-many"
        scrape_2 = samples((await scrape(metrics_url))[2])
        refused = "jupybot_limit_refusals_total"
        assert value(scrape_2, refused, limit="terminal_sessions_per_address") == 1
        assert value(scrape_2, refused, limit="terminal_sessions") == 0
        await client.ws.close()


@pytest.mark.peers
@asyncio_test
async def test_sessions_started_programs_that_crash_at_start_and_those_left_out(
    server: tuple[JupybotProcess, str],
) -> None:
    process, metrics_url = server
    # From an address of its own: one session per address, and other tests hold 127.0.0.1's.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.4", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        client = await raw(http, process)
        await client.hello(program="crash", cols=80, rows=24)
        await client.until_closed()
    process.wait_for(r"terminal: crash exited with status 3 at start")
    scrape_ = samples((await scrape(metrics_url))[2])
    assert value(scrape_, "jupybot_terminal_sessions_started_total", program="crash") == 1
    assert value(scrape_, "jupybot_terminal_failed_starts_total", program="crash") == 1
    assert value(scrape_, "jupybot_terminal_failed_starts_total", program="cat") == 0
    assert value(scrape_, "jupybot_terminal_program_available", program="broken") == 0
    assert value(scrape_, "jupybot_terminal_program_available", program="cat") == 1


@pytest.mark.peers
@asyncio_test
async def test_line_mode_answers_by_program_and_how_each_ended(
    server: tuple[JupybotProcess, str],
) -> None:
    process, metrics_url = server

    async def line(program: str, commands: list[str]) -> list[dict[str, Any]]:
        """Every event of a line-mode session of C{program} given C{commands}, one an answer."""
        # From an address of its own: one session per address, and other tests hold theirs.
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.5", 0))
        async with aiohttp.ClientSession(connector=connector) as http:
            ws = await http.ws_connect(process.base_url.replace("http", "ws") + "/terminal/line")
            await ws.send_json({"event": "initialize", "program": program})
            events = [await ws.receive_json(timeout=30)]
            for command in commands:
                await ws.send_json({"event": "command", "input": command})
                events.append(await ws.receive_json(timeout=30))
            await ws.close()
            return events

    shell = await line("sh", ["echo hi", "exit 4"])
    assert [event["event"] for event in shell] == ["output", "output", "exit"]
    assert shell[1]["output"] == "hi\n$ "
    slow = await line("slow", [])  # prints nothing, waits for no input: its time limit ends it
    assert slow[0]["event"] == "error" and slow[0]["reason"] == "time-limit"
    scrape_ = samples((await scrape(metrics_url))[2])
    answers = "jupybot_terminal_line_answers_total"
    assert value(scrape_, answers, program="sh", ended="waiting") == 2  # the prompt, "hi"
    assert value(scrape_, answers, program="sh", ended="exited") == 1
    assert value(scrape_, answers, program="slow", ended="time-limit") == 1
    assert value(scrape_, answers, program="slow", ended="waiting") == 0


@pytest.mark.peers
@asyncio_test
async def test_contact_messages_accepted_delivered_and_rate_limited(
    server: tuple[JupybotProcess, str],
) -> None:
    process, metrics_url = server
    message = {"name": "Ada", "email": "ada@example.org", "message": "Hello there"}
    before = samples((await scrape(metrics_url))[2])
    assert value(before, "jupybot_contact_accepted_total") == 0
    async with aiohttp.ClientSession() as http:
        async with http.post(process.base_url + "/contact", json=message) as response:
            assert response.status == 202, await response.text()
            message_id = (await response.json())["id"]
        process.wait_for(rf"contact: message {message_id} delivered to file")
        async with http.post(process.base_url + "/contact", json=message) as response:
            assert response.status == 429
    after = samples((await scrape(metrics_url))[2])
    assert value(after, "jupybot_contact_accepted_total") == 1
    assert value(after, "jupybot_contact_delivered_total", channel="file") == 1
    assert value(after, "jupybot_contact_pending", channel="file") == 0
    assert value(after, "jupybot_limit_refusals_total", limit="contact_messages_per_address") == 1


@pytest.mark.peers
@asyncio_test
async def test_a_peer_outside_metrics_allow_is_refused(server: tuple[JupybotProcess, str]) -> None:
    _, metrics_url = server
    # Loopback, but not the one address metrics.allow lists: a real socket from 127.0.0.2.
    status, content_type, text = await scrape(metrics_url, source="127.0.0.2")
    assert status == 403 and content_type == "application/json"
    assert "metrics.allow" in text and "jupybot_" not in text
    assert (await scrape(metrics_url))[0] == 200
    # Nothing else is served on the metrics listener: not the site, not its files.
    for path in ("/", "/ping", "/contact", "/static/terminal.js"):
        status, content_type, _ = await scrape(metrics_url.replace("/metrics", path))
        assert status == 404 and content_type == "application/json", path


@pytest.mark.peers
@asyncio_test
async def test_open_connections_and_the_refusal_at_the_per_address_connection_cap(
    server: tuple[JupybotProcess, str],
) -> None:
    process, metrics_url = server
    host, port = process.base_url.removeprefix("http://").rsplit(":", 1)
    # From an address of their own: the other tests' connections count for 127.0.0.1.
    source = ("127.0.0.3", 0)
    held = [await asyncio.open_connection(host, int(port), local_addr=source) for _ in range(4)]
    try:
        # An answer on each (kept alive) says the site holds all four.
        for reader, writer in held:
            writer.write(b"GET /ping HTTP/1.1\r\nHost: metrics.test\r\n\r\n")
            status_line = await asyncio.wait_for(reader.readline(), 30)
            assert status_line.split()[1] in (b"200", b"503"), status_line
        scrape_ = samples((await scrape(metrics_url))[2])
        assert value(scrape_, "jupybot_web_connections") >= 4
        fifth = aiohttp.TCPConnector(local_addr=source)
        async with (
            aiohttp.ClientSession(connector=fifth) as http,
            http.get(process.base_url + "/ping") as response,
        ):
            assert response.status == 429  # a fifth from that address
        scrape_ = samples((await scrape(metrics_url))[2])
        refused = "jupybot_limit_refusals_total"
        assert value(scrape_, refused, limit="connections_per_address") == 1
        assert value(scrape_, refused, limit="connections") == 0
    finally:
        for _, writer in held:
            writer.close()


def test_metrics_are_off_unless_enabled(tmp_path: Path) -> None:
    storage = (
        f"storage: {{path: {str(tmp_path / 'var')!r}}}\ngateway: {{url: 'http://127.0.0.1:1'}}\n"
    )
    config = parse_config(storage, environ={})
    assert not config.metrics.enabled
    assert config.metrics.allow == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    top = build_service(config, BuildOnlyReactor())
    assert top.statuses()["metrics"] == "disabled"
    assert "metrics" not in {part.name for part in top}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("metrics: {allow: ['10.0.0.0/33']}", "metrics.allow: expected addresses or networks"),
        ("metrics: {listen: 'nonsense:1'}", "metrics.listen: expected a Twisted server endpoint"),
        ("metrics: {enable: true}", "metrics.enable: unknown key"),
    ],
)
def test_metrics_config_mistakes_are_named(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, environ={})
    assert any(line.startswith(error) for line in raised.value.errors), raised.value.errors


def get(resource: MetricsResource, peer: Any) -> tuple[int, bytes]:
    """GET /metrics as a peer at C{peer} would: the status and the body."""
    request = DummyRequest([b""])
    request.client = peer
    body = resource.render_GET(request)  # type: ignore[arg-type]
    code: int | None = request.responseCode
    return code or 200, body


def test_only_allowed_peers_read_the_metrics() -> None:
    loopback = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
    resource = MetricsResource(metrics_registry(MetricSources(dict)), loopback)
    for peer in (
        IPv4Address("TCP", "127.0.0.1", 5000),
        IPv6Address("TCP", "::1", 5000),
        IPv6Address("TCP", "::ffff:127.0.0.1", 5000),  # a dual-stack listener's IPv4 peer
        UNIXAddress(b"/run/jupybot/metrics.sock"),
    ):
        code, body = get(resource, peer)
        assert code == 200 and b"jupybot_info" in body, peer
    for peer in (
        IPv4Address("TCP", "192.0.2.7", 5000),
        IPv6Address("TCP", "2001:db8::7", 5000),
        IPv6Address("TCP", "::ffff:192.0.2.7", 5000),
    ):
        code, body = get(resource, peer)
        assert code == 403 and b"jupybot_" not in body, peer


class FakePool:
    ready = 1


class FakeKernels:
    """The kernel core as /metrics reads it."""

    def __init__(self) -> None:
        self.gateway_restarts = 0
        self.execution_observers: list[Any] = []
        self.running = 0
        self.pool = FakePool()

    def running_kernels(self) -> int:
        return self.running


def test_executions_by_network_and_status_with_their_durations() -> None:
    kernels = FakeKernels()
    registry = metrics_registry(MetricSources(dict, kernels=kernels))
    (observe,) = kernels.execution_observers
    observe("matrix:!room:example.org", ExecutionResult("ok", 1, 0.2))
    observe("matrix:!room:example.org", ExecutionResult("timeout", None, 300.0))
    observe("discord:1234", ExecutionResult("ok", 1, 3.0))
    kernels.running = 2
    kernels.gateway_restarts = 1
    scrape_ = _scrape(registry)
    executions = "jupybot_executions_total"
    assert value(scrape_, executions, network="matrix", status="ok") == 1
    assert value(scrape_, executions, network="matrix", status="timeout") == 1
    assert value(scrape_, executions, network="discord", status="ok") == 1
    durations = "jupybot_execution_duration_seconds"
    assert value(scrape_, durations + "_count", network="matrix") == 2
    assert value(scrape_, durations + "_sum", network="matrix") == pytest.approx(300.2)
    assert value(scrape_, durations + "_bucket", network="discord", le="2.5") == 0
    assert value(scrape_, durations + "_bucket", network="discord", le="5.0") == 1
    assert value(scrape_, "jupybot_kernels_running") == 2
    assert value(scrape_, "jupybot_kernels_warm") == 1
    assert value(scrape_, "jupybot_gateway_restarts_total") == 1


def test_chat_commands_by_network_and_parts_up() -> None:
    tally = {("discord", "run"): 3, ("matrix", "help"): 1}
    registry = metrics_registry(
        MetricSources(
            lambda: {"kernels": "running", "contact": "starting", "matrix": "disabled"},
            chat_commands=lambda: tally,
        )
    )
    scrape_ = _scrape(registry)
    assert value(scrape_, "jupybot_chat_commands_total", network="discord", command="run") == 3
    assert value(scrape_, "jupybot_chat_commands_total", network="matrix", command="help") == 1
    assert value(scrape_, "jupybot_part_up", part="kernels") == 1
    assert value(scrape_, "jupybot_part_up", part="contact") == 0
    assert ("jupybot_part_up", (("part", "matrix"),)) not in scrape_
    assert value(scrape_, "process_open_fds") > 0


def _scrape(registry: CollectorRegistry) -> Samples:
    return samples(generate_latest(registry).decode())


def _version() -> str:
    return __version__


def test_the_composition_root_hands_the_kernel_manager_to_the_metrics(tmp_path: Path) -> None:
    storage = (
        f"storage: {{path: {str(tmp_path / 'var')!r}}}\ngateway: {{url: 'http://127.0.0.1:1'}}\n"
    )
    config = parse_config(storage + "metrics: {enabled: true}\n", environ={})
    top = build_service(config, BuildOnlyReactor())
    names = [part.name for part in top]
    # Before the site: it stops after it, and counts whatever the site still served.
    assert names.index("metrics") == names.index("web") - 1
    (metrics,) = [part for part in top if isinstance(part, MetricsPart)]
    kernels = top.getServiceNamed("kernels").manager
    resource = metrics.resource
    loopback = IPv4Address("TCP", "127.0.0.1", 5000)
    before = samples(get(resource, loopback)[1].decode())
    assert value(before, "jupybot_gateway_restarts_total") == 0
    assert value(before, "jupybot_kernels_running") == 0
    kernels.gateway_lost("the embedded gateway died")
    for observe in kernels.execution_observers:
        observe("discord:42", ExecutionResult("died", None, 1.5))
    after = samples(get(resource, loopback)[1].decode())
    assert value(after, "jupybot_gateway_restarts_total") == 1
    assert value(after, "jupybot_executions_total", network="discord", status="died") == 1


def test_the_command_layer_counts_commands_and_rate_refusals_by_network() -> None:
    """Through the real command layer: what its tallies say is what /metrics shows."""
    registry = metrics_registry(MetricSources(dict))
    before = _scrape(registry)
    bot = ChatCommands(
        FakeKernelManager(),
        ChatNetwork(
            AccessPolicy.build(["*:example.org"], [], []), Addressing(prefixes=("!jupybot",))
        ),
        Clock(),
        rules=ChatRules(ChatLimits(commands_per_minute=1, command_burst=2)),
    )
    room = FakeConversation(key="matrix:!room:example.org")
    for number in range(3):
        bot.handle(IncomingMessage(f"$m{number}", "@ada:example.org", "!jupybot help", room))
    after = _scrape(registry)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("jupybot_chat_commands_total", network="matrix", command="help") == 2
    assert grew("jupybot_limit_refusals_total", limit="chat_commands_per_sender") == 1


@pytest.mark.peers
@asyncio_test
async def test_a_killed_embedded_gateway_is_counted_as_a_restart(tmp_path: Path) -> None:
    metrics = "metrics: {enabled: true, listen: 'tcp:0:interface=127.0.0.1'}\n"
    process = JupybotProcess(jupybot_config(tmp_path, metrics), tmp_path)
    try:
        process.wait_listening(timeout=120)
        metrics_url = process.wait_for(r"metrics: serving (http://[^/\s]+/metrics)").group(1)
        process.wait_for("embedded Kernel Gateway ready at", timeout=120)
        before = samples((await scrape(metrics_url))[2])
        assert value(before, "jupybot_gateway_restarts_total") == 0
        assert value(before, "jupybot_part_up", part="kernels") == 1
        os.kill(embedded_gateway(process), signal.SIGKILL)
        process.wait_for("the embedded Kernel Gateway stopped", timeout=60)
        after = samples((await scrape(metrics_url))[2])
        assert value(after, "jupybot_gateway_restarts_total") == 1
    finally:
        process.stop()


def embedded_gateway(process: JupybotProcess) -> int:
    """The pid of the Kernel Gateway that C{process} started."""
    (gateway,) = [
        pid
        for pid in descendants(process.pid)
        if b"kernel_gateway" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return gateway
