"""Installs Twisted's asyncio reactor, once and on purpose, on a fresh asyncio loop; and names
the type parts receive it as (L{Reactor}).

jupybot's Twisted protocols and its asyncio libraries (matrix-nio, discord.py, aiohttp) must
share one event loop; this is the only place that decides which loop that is.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

ASYNCIO_REACTOR = "AsyncioSelectorReactor"

# The reactor as a part receives it when it uses several of its interfaces at once (time and
# TCP for the kernels, time and processes for the terminal...). A class that uses one interface
# names it instead (IReactorTime for a clock). This stays Any: zope interfaces are nominal for
# mypy-zope, so no combination of them declared here would accept the installed reactor (typed
# by Twisted as its own private combination) or the test fakes without a cast at every caller.
Reactor = Any


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
    if name != ASYNCIO_REACTOR:
        raise WrongReactor(name)
    from twisted.internet import reactor

    running: asyncio.AbstractEventLoop = reactor._asyncioEventloop  # type: ignore[attr-defined]
    asyncio.set_event_loop(running)
    return running
