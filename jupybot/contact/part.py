"""The contact part: the store's thread, the outbox, and POST /contact on the site."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource

from ..config.contact import ContactConfig
from ..parts import PartContext
from ..reactor import Clock, ThreadReactor
from ..service import JupybotService, Part
from ..state import StateDirectory
from ..web.clients import NO_PROXIES, ProxyTrust
from .api import ContactMessage
from .file_channel import FileChannel
from .outbox import Outbox
from .registry import ChannelRegistry
from .resource import ContactResource
from .store import ContactStore, NewMessage

DATABASE = "contact.sqlite3"


def database_path(state: StateDirectory) -> Path:
    return state.file(DATABASE)


class _ContactReactor(Clock, ThreadReactor, Protocol):
    """Time for the outbox's retries and the rate limit; the store's writer thread calls back."""


class ContactPart(Part):
    def __init__(
        self,
        config: ContactConfig,
        origins: tuple[str, ...],
        reactor: _ContactReactor,
        state: StateDirectory,
        channels: ChannelRegistry,
        proxies: ProxyTrust = NO_PROXIES,
    ) -> None:
        super().__init__("contact")
        self._config = config
        self.accepted = 0  # messages stored (answered 202) since start; read by /metrics
        self.store = ContactStore(reactor, database_path(state))
        self.outbox = Outbox(
            IReactorTime(reactor),
            self.store,
            channels,
            config.deliver_to,
            fallback=config.fallback_to,
            on_problem=self._channel_problem,
        )
        self._problems: dict[str, str] = {}
        self.resource = ContactResource(
            config, origins, IReactorTime(reactor), self.accept, proxies
        )
        if "file" in config.deliver_to + config.fallback_to:
            path = Path(config.file)
            channels.register(FileChannel(path if path.is_absolute() else state.file(config.file)))

    def _channel_problem(self, channel: str, problem: str | None) -> None:
        """/ping shows what keeps a channel from delivering, until it delivers again."""
        if problem is None:
            self._problems.pop(channel, None)
        else:
            self._problems[channel] = problem
        self.detail = "; ".join(f"{name} {text}" for name, text in self._problems.items()) or None

    def accept(self, new: NewMessage) -> Deferred[ContactMessage]:
        """Store a message, then hand it to the outbox; fires once it is on disk."""
        d = self.store.add(new, self._config.deliver_to)

        def queue(message: ContactMessage) -> ContactMessage:
            self.accepted += 1
            self.outbox.enqueue(message)
            return message

        return d.addCallback(queue)

    def start_part(self) -> Deferred[None]:
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
        self.outbox.stop()
        return self.store.stop()


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
