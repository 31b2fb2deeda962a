"""The contact store and file channel as the contact part runs them: the store's jobs in its
writer process, the file channel's appends on a thread pool."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

from jupybot.contact.file_channel import FileChannel
from jupybot.contact.part import ContactThreadPool
from jupybot.contact.store import ContactStore
from jupybot.reactor import installed_reactor

S = TypeVar("S", bound=ContactStore)


@asynccontextmanager
async def running_store(path: Path, store_class: type[S]) -> AsyncIterator[S]:
    """A started C{store_class} on C{path}; stopped on the way out."""
    store = store_class(installed_reactor(), path)
    store.start()
    try:
        yield store
    finally:
        await store.stop()


@contextmanager
def running_pool() -> Iterator[ContactThreadPool]:
    """The contact part's thread pool, started; stopped on the way out."""
    pool = ContactThreadPool()
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


def file_channel(path: Path, pool: ContactThreadPool) -> FileChannel:
    return FileChannel(path, installed_reactor(), pool)
