"""Installs Twisted's asyncio reactor, once and on purpose, on a fresh asyncio loop; and names
the types parts receive it as (L{Clock}, L{ProcessReactor}, L{PtyReactor}, L{NetworkReactor},
L{Reactor}...).

jupybot's Twisted protocols and its asyncio libraries (matrix-nio, discord.py, aiohttp) must
share one event loop; this is the only place that decides which loop that is.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, AnyStr, Protocol

if TYPE_CHECKING:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    from twisted.internet.interfaces import (
        IConnector,
        IDelayedCall,
        IListeningPort,
        IProcessProtocol,
        IProcessTransport,
        IReadDescriptor,
        IWriteDescriptor,
    )
    from twisted.internet.protocol import ClientFactory, ServerFactory

ASYNCIO_REACTOR = "AsyncioSelectorReactor"

# The reactor as each part uses it, as structural protocols: the installed reactor and Twisted's
# fakes (task.Clock, MemoryReactorClock) match them without declaring anything. zope interfaces
# would not do: mypy-zope checks them nominally, so a combination declared here (time and
# processes, say) would accept neither the installed reactor nor the fakes without a cast.
# Where Twisted's own helpers want its zope interface (Deferred.addTimeout, deferLater,
# LoopingCall.clock), adapt: IReactorTime(clock) checks at run time that it provides it.


class Clock(Protocol):
    """Time: what a timer, a deadline or a rate needs."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> IDelayedCall: ...


class ProcessReactor(Clock, Protocol):
    """Time and child processes: what a supervised process needs."""

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[AnyStr, AnyStr] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> IProcessTransport: ...


class DescriptorReactor(Protocol):
    """Watching file descriptors (Twisted's C{IReactorFDSet}, what of it a transport uses): a
    transport built on the reactor, not by it, registers itself for reading and writing."""

    def addReader(self, reader: IReadDescriptor) -> None: ...

    def removeReader(self, reader: IReadDescriptor) -> None: ...

    def addWriter(self, writer: IWriteDescriptor) -> None: ...

    def removeWriter(self, writer: IWriteDescriptor) -> None: ...


class PtyReactor(Clock, DescriptorReactor, Protocol):
    """Time and file descriptors: what a PTY session needs. Its transport is a C{PTYProcess}
    subclass it builds itself (C{reactor.spawnProcess} can only make Twisted's own), which
    registers the terminal with this reactor (C{addReader}, C{addWriter} and their removals):
    Twisted's process module is untyped, so this says what mypy cannot see there."""


class NetworkReactor(Clock, Protocol):
    """Time and outgoing TCP: what an HTTP or websocket client (Agent, endpoints) needs."""

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: ClientFactory,
        timeout: float = 30.0,
        bindAddress: tuple[str, int] | None = None,
    ) -> IConnector: ...


class ListeningReactor(Clock, Protocol):
    """Time and listening sockets: what a site on an endpoint description (`tcp:8080`) needs."""

    def listenTCP(
        self, port: int, factory: ServerFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort: ...


class ThreadReactor(Protocol):
    """Getting back onto the reactor's thread from a worker thread."""

    def callFromThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None: ...


class Reactor(
    ProcessReactor, PtyReactor, NetworkReactor, ListeningReactor, ThreadReactor, Protocol
):
    """The whole reactor as the composition root hands it out (L{installed_reactor}, or a test's
    fake): every part takes the narrower protocol above that it uses."""


class WrongReactor(Exception):
    """Another reactor was installed before jupybot could install the asyncio one."""


def installed_reactor_name() -> str | None:
    """The class name of the installed reactor, or None when none is installed yet."""
    reactor = sys.modules.get("twisted.internet.reactor")
    return None if reactor is None else type(reactor).__name__


def install_asyncio_reactor() -> asyncio.AbstractEventLoop:
    """Install the asyncio reactor on a new loop that is also the current loop.

    When the asyncio reactor is already installed (``twistd -r asyncio``), its loop is reused.
    Any other installed reactor raises L{WrongReactor}.
    """
    name = installed_reactor_name()
    if name is None:
        from twisted.internet import asyncioreactor

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(eventloop=loop)
        return loop
    running = installed_reactor()._asyncioEventloop
    asyncio.set_event_loop(running)
    return running


def installed_reactor() -> AsyncioSelectorReactor:
    """The installed asyncio reactor with its own type, which matches L{Reactor}: Twisted types
    C{twisted.internet.reactor} as a combination of interfaces that lacks C{callFromThread}.

    Any other installed reactor raises L{WrongReactor}.
    """
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise WrongReactor(type(reactor).__name__)
    return reactor
