"""GET /metrics: what this server is doing, in the Prometheus text format, for its owner.

Collectors read the parts' state when Prometheus scrapes (sessions by program, kernels running,
contact messages waiting, and the counts each part keeps); only executions (how many, how
long) are observed as they happen, through the kernel manager's observer hook. Every metric lives in this
server's own registry, not in prometheus_client's process-wide one.

Served on a listener of its own (`metrics.listen`), never the public site, so a reverse proxy
in front of the site has no /metrics to pass on; and only to the peers of `metrics.allow`
(loopback unless configured). Off by default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from . import __version__
from .commands import ChatCommands
from .config.metrics import MetricsConfig, Network
from .kernels import ExecutionResult
from .parts import PartContext
from .reactor import ListeningReactor
from .service import DISABLED, RUNNING, JupybotService, Part
from .terminal.sessions import ANSWER_ENDINGS

if TYPE_CHECKING:
    from .contact.part import ContactPart
    from .terminal.sessions import TerminalSessions

__all__ = [
    "KernelStats",
    "MetricSources",
    "MetricsPart",
    "MetricsResource",
    "WarmPoolStats",
    "build_metrics",
    "metrics_registry",
]

# Execution times run from a print (milliseconds) to the default 300 s execution timeout.
EXECUTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class WarmPoolStats(Protocol):
    @property
    def ready(self) -> int: ...


class KernelStats(Protocol):
    """What /metrics reads of the kernel core."""

    gateway_restarts: int
    execution_observers: list[Callable[[str, ExecutionResult], None]]

    @property
    def pool(self) -> WarmPoolStats: ...

    def running_kernels(self) -> int: ...


class OpenConnections(Protocol):
    @property
    def open(self) -> int: ...


class EdgeStats(Protocol):
    """What /metrics reads of the site's listening edge (L{jupybot.web.edges.EdgeFactory})."""

    @property
    def refusals(self) -> Mapping[str, int]: ...

    @property
    def connections(self) -> OpenConnections: ...


def _no_edge() -> EdgeStats | None:
    return None


def _chat_commands() -> Mapping[tuple[str, str], int]:
    return ChatCommands.handled


def _chat_rate_limited() -> Mapping[str, int]:
    return ChatCommands.rate_limited


@dataclass(frozen=True)
class MetricSources:
    """The parts' state as the composition root hands it over; None: that part is not built."""

    statuses: Callable[[], Mapping[str, str]]
    sessions: TerminalSessions | None = None
    kernels: KernelStats | None = None
    contact: ContactPart | None = None
    # The site's edge once it listens (connections open, refused at its caps).
    edges: Callable[[], EdgeStats | None] = field(default=_no_edge)
    # The command layer's tallies are per process (one command layer per chat part).
    chat_commands: Callable[[], Mapping[tuple[str, str], int]] = field(default=_chat_commands)
    chat_rate_limited: Callable[[], Mapping[str, int]] = field(default=_chat_rate_limited)


def network_of(owner: str) -> str:
    """The chat network of a kernel owner or conversation key (``matrix:!room:server``)."""
    return owner.partition(":")[0] or "unknown"


class PartsCollector(Collector):
    """Reads every part's state at scrape time."""

    def __init__(self, sources: MetricSources) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        info = InfoMetricFamily("jupybot", "The jupybot version this server runs.")
        info.add_metric([], {"version": __version__})
        yield info
        up = GaugeMetricFamily(
            "jupybot_part_up",
            "1 while the part runs and serves; 0 while it starts, is down, failed or stopped.",
            labels=["part"],
        )
        for part, status in self._sources.statuses().items():
            if status != DISABLED:
                up.add_metric([part], 1.0 if status == RUNNING else 0.0)
        yield up
        refusals = CounterMetricFamily(
            "jupybot_limit_refusals",
            "Requests refused at a per-visitor or server-wide limit, by limit.",
            labels=["limit"],
        )
        yield from self._terminal(refusals)
        yield from self._kernels()
        yield from self._contact(refusals)
        yield from self._edges(refusals)
        chat_refused = sum(self._sources.chat_rate_limited().values())
        refusals.add_metric(["chat_commands_per_sender"], chat_refused)
        yield refusals
        commands = CounterMetricFamily(
            "jupybot_chat_commands",
            "Chat commands run (access granted), by chat network and command.",
            labels=["network", "command"],
        )
        for (network, command), count in sorted(self._sources.chat_commands().items()):
            commands.add_metric([network, command], count)
        yield commands

    def _edges(self, refusals: CounterMetricFamily) -> Iterable[Metric]:
        edges = self._sources.edges()
        if edges is None:
            return
        yield GaugeMetricFamily(
            "jupybot_web_connections",
            "Connections open to the site, websockets included.",
            edges.connections.open,
        )
        for limit, count in sorted(edges.refusals.items()):
            refusals.add_metric([limit], count)

    def _terminal(self, refusals: CounterMetricFamily) -> Iterable[Metric]:
        sessions = self._sources.sessions
        if sessions is None:
            return
        running = sessions.programs_running()
        gauge = GaugeMetricFamily(
            "jupybot_terminal_sessions",
            "Terminal sessions whose program runs (detached ones included), by program.",
            labels=["program"],
        )
        programs = sorted(set(sessions.programs) | set(running))
        for program in programs:
            gauge.add_metric([program], running[program])
        yield gauge
        available = GaugeMetricFamily(
            "jupybot_terminal_program_available",
            "1 for a program visitors can start, 0 for one that cannot run here (see /ping).",
            labels=["program"],
        )
        started = CounterMetricFamily(
            "jupybot_terminal_sessions_started",
            "Terminal sessions started, by program.",
            labels=["program"],
        )
        failed = CounterMetricFamily(
            "jupybot_terminal_failed_starts",
            "Programs that ended badly within 2 s of their start, by program.",
            labels=["program"],
        )
        answers = CounterMetricFamily(
            "jupybot_terminal_line_answers",
            "Line-mode answers (to a start or a command), by program and how each ended: waiting"
            " (the program waits for input again), exited, time-limit or idle (the session's"
            " limits), shutdown, closed (the client left before it).",
            labels=["program", "ended"],
        )
        for program in programs:
            available.add_metric([program], 0 if program in sessions.withdrawn else 1)
            started.add_metric([program], sessions.started[program])
            failed.add_metric([program], sessions.failed_at_start[program])
            for ending in ANSWER_ENDINGS:
                answers.add_metric([program, ending], sessions.line_answers[program, ending])
        yield from (available, started, failed, answers)
        refusals.add_metric(["terminal_sessions_per_address"], sessions.refused["too-many"])
        refusals.add_metric(["terminal_sessions"], sessions.refused["busy"])

    def _kernels(self) -> Iterable[Metric]:
        kernels = self._sources.kernels
        if kernels is None:
            return
        yield GaugeMetricFamily(
            "jupybot_kernels_running", "Kernels running for chat users.", kernels.running_kernels()
        )
        yield GaugeMetricFamily(
            "jupybot_kernels_warm",
            "Kernels started ahead for new rooms (gateway.prestart), waiting to be taken.",
            kernels.pool.ready,
        )
        yield CounterMetricFamily(
            "jupybot_gateway_restarts",
            "Times the embedded Kernel Gateway died and was restarted (its kernels lost).",
            kernels.gateway_restarts,
        )

    def _contact(self, refusals: CounterMetricFamily) -> Iterable[Metric]:
        contact = self._sources.contact
        if contact is None:
            return
        yield CounterMetricFamily(
            "jupybot_contact_accepted",
            "Contact messages stored (answered 202) since start.",
            contact.accepted,
        )
        delivered = CounterMetricFamily(
            "jupybot_contact_delivered",
            "Contact message deliveries that succeeded since start, by channel.",
            labels=["channel"],
        )
        pending = GaugeMetricFamily(
            "jupybot_contact_pending",
            "Contact messages waiting for delivery, by channel.",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "jupybot_contact_oldest_pending_seconds",
            "How long the oldest contact message waiting for a channel has waited (0: none).",
            labels=["channel"],
        )
        failing = GaugeMetricFamily(
            "jupybot_contact_delivery_failing_seconds",
            "How long deliveries to a channel have failed in a row (0 while it delivers).",
            labels=["channel"],
        )
        health = contact.health()
        for channel in sorted(set(health.channels) | set(contact.outbox.delivered)):
            delivered.add_metric([channel], contact.outbox.delivered[channel])
            waiting = health.channels.get(channel)
            pending.add_metric([channel], waiting.pending if waiting else 0)
            oldest.add_metric([channel], waiting.oldest_pending_seconds if waiting else 0.0)
            failing.add_metric([channel], waiting.failing_seconds if waiting else 0.0)
        yield from (delivered, pending, oldest, failing)
        yield GaugeMetricFamily(
            "jupybot_contact_store_writable",
            "1 while the contact store takes writes; 0 while it cannot (a full disk): /ping "
            "shows contact down and every POST /contact is answered 503.",
            0.0 if health.store_problem is not None else 1.0,
        )
        yield GaugeMetricFamily(
            "jupybot_contact_degraded",
            "1 while a channel has failed to deliver for longer than "
            "contact.degraded_after_seconds (/ping shows contact degraded), else 0.",
            1.0 if health.degraded is not None else 0.0,
        )
        refusals.add_metric(["contact_messages_per_address"], contact.resource.rate_limited)


def metrics_registry(sources: MetricSources) -> CollectorRegistry:
    """This server's registry: the parts' state, execution counts and times, the process."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PartsCollector(sources))
    ProcessCollector(registry=registry)
    if sources.kernels is not None:
        executions = Counter(
            "jupybot_executions",
            "Code executions that ran to an end, by chat network and status "
            "(ok, error, aborted, timeout, died).",
            ["network", "status"],
            registry=registry,
        )
        durations = Histogram(
            "jupybot_execution_duration_seconds",
            "How long code executions took, by chat network.",
            ["network"],
            buckets=EXECUTION_BUCKETS,
            registry=registry,
        )

        def observe(owner: str, result: ExecutionResult) -> None:
            network = network_of(owner)
            executions.labels(network, result.status).inc()
            durations.labels(network).observe(result.duration_seconds)

        sources.kernels.execution_observers.append(observe)
    return registry


class MetricsResource(Resource):
    """GET /metrics for the allowed peers; 403 with a JSON reason for anyone else."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, allow: tuple[Network, ...]) -> None:
        super().__init__()
        self._registry = registry
        self._allow = allow

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        if not self.allowed(request):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": "metrics are not served to this address (metrics.allow)"}'
        # Prometheus says which formats it reads (the text format, OpenMetrics) in Accept.
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encode, content_type = choose_encoder(accept)
        request.setHeader(b"content-type", content_type.encode())
        body: bytes = encode(self._registry)
        return body

    def allowed(self, request: Request) -> bool:
        peer = request.getClientAddress()
        if not isinstance(peer, (IPv4Address, IPv6Address)):
            return True  # a UNIX socket: its file's permissions decide
        try:
            address = ipaddress.ip_address(peer.host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allow)


class _MetricsRoot(Resource):
    """The metrics listener's root: /metrics, and a JSON 404 for any other path."""

    def __init__(self, metrics: MetricsResource) -> None:
        super().__init__()
        self.putChild(b"metrics", metrics)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _NotFound()

    def render_GET(self, request: Request) -> bytes:
        return _NotFound().render_GET(request)


class _NotFound(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        return b'{"error": "only /metrics is served here"}'


class MetricsPart(Part):
    """Listens on `metrics.listen` with /metrics and nothing else."""

    def __init__(
        self, config: MetricsConfig, reactor: ListeningReactor, sources: MetricSources
    ) -> None:
        super().__init__("metrics")
        self._config = config
        self._reactor = reactor
        self.resource = MetricsResource(metrics_registry(sources), config.allow)
        self.site = Site(_MetricsRoot(self.resource))
        self.site.displayTracebacks = False
        self._port: IListeningPort | None = None

    @property
    def port(self) -> IListeningPort | None:
        return self._port

    def start_part(self) -> Deferred[None]:
        d: Deferred[IListeningPort] = serverFromString(self._reactor, self._config.listen).listen(
            self.site
        )

        def listening(port: IListeningPort) -> None:
            self._port = port
            address = port.getHost()
            self.log.info(
                "metrics: serving http://{host}:{port}/metrics to {allow}",
                host=getattr(address, "host", address),
                port=getattr(address, "port", ""),
                allow=", ".join(str(network) for network in self._config.allow) or "nobody",
            )

        return d.addCallback(listening)

    def stop_part(self) -> Deferred[None] | None:
        port, self._port = self._port, None
        return None if port is None else port.stopListening()


def build_metrics(context: PartContext, top: JupybotService, sources: MetricSources) -> None:
    """The metrics part, unless `metrics.enabled` is false."""
    config = context.config.metrics
    if not config.enabled:
        top.add_disabled("metrics", "metrics.enabled is false")
        return
    top.add_part(MetricsPart(config, context.reactor, sources))
