"""A contact store as the contact part runs it: on a thread pool of its own, started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from jupybot.contact.part import StoreThreadPool
from jupybot.contact.store import ContactStore
from jupybot.reactor import installed_reactor

S = TypeVar("S", bound=ContactStore)


@asynccontextmanager
async def running_store(path: Path, store_class: type[S]) -> AsyncIterator[S]:
    """A started C{store_class} on C{path}; stopped, and its pool with it, on the way out."""
    pool = StoreThreadPool()
    pool.start()
    store = store_class(installed_reactor(), pool, path)
    store.start()
    try:
        yield store
    finally:
        await store.stop()
        pool.stop()
