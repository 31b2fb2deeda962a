"""The contact part: the store (and its writer process), the outbox, and POST /contact on the
site.

/ping shows it C{down: cannot store (disk full)} while the store cannot write, or C{down: cannot
store (the writer process cannot open ...)} while its writer process cannot start (every POST is
answered 503 meanwhile), and C{degraded: ...} with how many messages wait and for how long once a
channel has failed to deliver for longer than `contact.degraded_after_seconds`; /metrics reads the
same (L{ContactPart.health}).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from threading import Thread
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource

from ..config.contact import ContactConfig
from ..parts import PartContext
from ..service import RUNNING, JupybotService, Part
from ..state import StateDirectory
from ..web.clients import NO_PROXIES, ProxyTrust
from .api import ContactMessage
from .file_channel import FileChannel
from .outbox import Outbox, retry_policy
from .registry import ChannelRegistry
from .resource import ContactResource
from .store import ContactStore, NewMessage, StoreReactor

DATABASE = "contact.sqlite3"
# How long what /ping and /metrics read of the outbox may be reused.
HEALTH_CACHE_SECONDS = 1.0


def database_path(state: StateDirectory) -> Path:
    return state.file(DATABASE)


class ContactThreadPool(ThreadPool):
    """The contact part's threads for blocking I/O: the file channel's appends (one at a time:
    the outbox delivers one message at a time per channel), and the store's jobs in tests that
    run them in this process (one at a time too). Its threads are daemons: a stop that gave up
    waiting for a dead disk does not keep the process from exiting (what was committed is
    safe; the rest was never acknowledged)."""

    def __init__(self) -> None:
        super().__init__(minthreads=1, maxthreads=2, name="jupybot-contact")

    def threadFactory(self, *args: Any, **kwargs: Any) -> Thread:  # type: ignore[override]
        return Thread(*args, daemon=True, **kwargs)


@dataclass(frozen=True)
class ChannelHealth:
    """One delivery channel as /metrics shows it."""

    pending: int
    # How long the oldest message waiting for it has waited (0 when none waits).
    oldest_pending_seconds: float
    # How long its deliveries have failed in a row (0 while it delivers).
    failing_seconds: float


@dataclass(frozen=True)
class ContactHealth:
    """Whether contact works: the store, what waits, and why it is degraded (None: it is not)."""

    store_problem: str | None
    pending: int  # messages waiting for at least one channel
    oldest_pending_seconds: float
    channels: dict[str, ChannelHealth]
    degraded: str | None


def duration(seconds: float) -> str:
    """C{45 s}, C{12 min}, C{2 h 5 min}, C{3 d 4 h}: how long, for people."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 3600:
        return f"{minutes} min"
    if whole < 86400:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"


class ContactPart(Part):
    def __init__(
        self,
        config: ContactConfig,
        origins: tuple[str, ...],
        reactor: StoreReactor,
        state: StateDirectory,
        channels: ChannelRegistry,
        proxies: ProxyTrust = NO_PROXIES,
        pool: ThreadPool | None = None,
    ) -> None:
        """C{pool}: a thread pool a test drives, which runs the file channel's appends and the
        store's jobs, in this process. By default the store runs its jobs in a writer process
        of its own, and the appends run in a L{ContactThreadPool} of the part's."""
        super().__init__("contact")
        self._config = config
        self._clock = reactor
        self._health: tuple[float, ContactHealth] | None = None
        self.accepted = 0  # messages stored (answered 202) since start; read by /metrics
        self.pool = pool if pool is not None else ContactThreadPool()
        self.store = ContactStore(reactor, database_path(state), pool=pool)
        self.outbox = Outbox(
            IReactorTime(reactor),
            self.store,
            channels,
            config.deliver_to,
            fallback=config.fallback_to,
            on_problem=self._channel_problem,
            retry_delay=retry_policy(config.retry_max_seconds),
        )
        self._problems: dict[str, str] = {}
        self.resource = ContactResource(
            config, origins, IReactorTime(reactor), self.accept, proxies
        )
        if "file" in config.deliver_to + config.fallback_to:
            path = Path(config.file)
            path = path if path.is_absolute() else state.file(config.file)
            channels.register(FileChannel(path, reactor, self.pool))

    def _channel_problem(self, channel: str, problem: str | None) -> None:
        """/ping shows what keeps a channel from delivering, until it delivers again."""
        if problem is None:
            self._problems.pop(channel, None)
        else:
            self._problems[channel] = problem
        self.detail = "; ".join(f"{name} {text}" for name, text in self._problems.items()) or None

    def problem(self) -> str | None:
        """Down while the store cannot write, or start its writer process: nothing can be
        accepted (every POST is 503)."""
        if self.store.problem is not None:
            return f"cannot store ({self.store.problem})"
        return None

    @property
    def status(self) -> str:
        """As every part's, and C{degraded: <what waits>} while it runs but a channel has
        failed to deliver for longer than `contact.degraded_after_seconds`."""
        status = super().status
        if status == RUNNING:
            degraded = self.health().degraded
            if degraded is not None:
                return f"degraded: {degraded}"
        return status

    def health(self) -> ContactHealth:
        """What /ping and /metrics show, read afresh at most once a second: with thousands of
        messages waiting, reading them at every /ping cost a third of its rate."""
        now = self._clock.seconds()
        cached = self._health
        if cached is not None and 0 <= now - cached[0] < HEALTH_CACHE_SECONDS:
            health = cached[1]
            if health.store_problem == self.store.problem:
                return health
        health = self._read_health(now)
        self._health = (now, health)
        return health

    def _read_health(self, now: float) -> ContactHealth:
        channels: dict[str, ChannelHealth] = {}
        failing: list[str] = []
        oldest: float | None = None
        for name, backlog in self.outbox.backlog().items():
            waited = 0.0
            if backlog.oldest_received_at is not None:
                waited = max(0.0, now - backlog.oldest_received_at)
                oldest = max(oldest or 0.0, waited)
            failed_for = 0.0
            if backlog.failing_since is not None:
                failed_for = max(0.0, now - backlog.failing_since)
                if failed_for >= self._config.degraded_after_seconds:
                    failing.append(f"{name} failing for {duration(failed_for)} ({backlog.error})")
            channels[name] = ChannelHealth(backlog.pending, waited, failed_for)
        pending = self.outbox.waiting_messages()
        degraded = None
        if failing:
            waiting = f"{pending} message{'s' if pending != 1 else ''} waiting"
            degraded = f"{waiting}, the oldest for {duration(oldest or 0.0)}; {'; '.join(failing)}"
        return ContactHealth(self.store.problem, pending, oldest or 0.0, channels, degraded)

    def accept(self, new: NewMessage) -> Deferred[ContactMessage]:
        """Store a message, then hand it to the outbox; fires once it is on disk."""
        return self.store.add(new, self._config.deliver_to).addCallback(self._stored)

    def _stored(self, message: ContactMessage) -> ContactMessage:
        self.accepted += 1
        self.outbox.enqueue(message)
        return message

    def start_part(self) -> Deferred[None]:
        self.pool.start()
        self.store.start()
        return Deferred.fromCoroutine(self._resume())

    async def _resume(self) -> None:
        waiting = await self.outbox.resume()
        self.log.info(
            "contact: {count} message delivery(ies) waiting from before; delivering to {channels}",
            count=waiting,
            channels=", ".join(self._config.deliver_to) or "nowhere",
        )

    def stop_part(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop_contact())

    async def _stop_contact(self) -> None:
        """The outbox hands the store what it has not recorded; the store finishes what it
        was asked, closes, and its writer process exits; then the pool's thread ends (idle by
        then: the join is short)."""
        self.outbox.stop()
        await self.store.stop()
        self.pool.stop()


def build_contact(
    context: PartContext,
    top: JupybotService,
    web_root: Resource,
    channels: ChannelRegistry,
    deliver_to: tuple[str, ...],
) -> ContactPart | None:
    """The contact part with POST /contact on C{web_root}, delivering to C{deliver_to} (names in
    C{channels}), unless `contact.enabled` is false."""
    config = context.config.contact
    if not config.enabled:
        top.add_disabled("contact", "contact.enabled is false")
        return None
    part = ContactPart(
        replace(config, deliver_to=deliver_to),
        context.config.web.origins,
        context.reactor,
        context.state,
        channels,
        ProxyTrust.of(context.config.web),
    )
    web_root.putChild(b"contact", part.resource)
    top.add_part(part)
    return part
