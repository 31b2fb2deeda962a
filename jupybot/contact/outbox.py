"""Delivers every accepted message to every channel, exactly once, however long it takes.

Per channel, messages go one at a time, oldest first. A channel that is not there yet (its bot
is still connecting) or says L{DeliveryUnavailable} is retried with backoff; L{DeliveryRefused}
marks the delivery failed, for the owner to see (`python -m jupybot.contact list`). Success is
recorded at once; after a crash the last attempt may be repeated, which the channels' idempotence
per message id absorbs.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .api import ContactMessage, DeliveryRefused, DeliveryUnavailable
from .registry import ChannelRegistry
from .store import ContactStore

log = Logger()

# 2, 4, 8 ... 300 s after each failed attempt in a row. No jitter: one outbox retries one
# channel, so there is no crowd of clients to spread out, and the delays stay exact.
RETRY_POLICY: Callable[[int], float] = backoffPolicy(
    initialDelay=2.0, maxDelay=300.0, factor=2.0, jitter=lambda: 0.0
)


class _ChannelQueue:
    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: deque[ContactMessage] = deque()
        self.queued: set[int] = set()
        self.busy = False
        self.retry: IDelayedCall | None = None
        self.failures = 0  # failed attempts in a row, for the retry policy


class Outbox:
    def __init__(
        self,
        reactor: IReactorTime,
        store: ContactStore,
        registry: ChannelRegistry,
        channels: tuple[str, ...],
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._registry = registry
        self._queues = {name: _ChannelQueue(name) for name in channels}
        self._stopped = False
        # Deliveries that succeeded since start, by channel; read by /metrics.
        self.delivered: Counter[str] = Counter()

    def pending(self) -> dict[str, int]:
        """How many messages wait for each channel (read by /metrics)."""
        return {name: len(queue.messages) for name, queue in self._queues.items()}

    async def resume(self) -> int:
        """Queue what a previous run left undelivered; returns how many deliveries wait."""
        waiting = await self._store.pending()
        for delivery in waiting:
            self.enqueue(delivery.message, (delivery.channel,))
        return len(waiting)

    def enqueue(self, message: ContactMessage, channels: tuple[str, ...] | None = None) -> None:
        for name in channels or tuple(self._queues):
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = _ChannelQueue(name)
            if message.id not in queue.queued:
                queue.queued.add(message.id)
                queue.messages.append(message)
            self._next(queue)

    def stop(self) -> None:
        self._stopped = True
        for queue in self._queues.values():
            if queue.retry is not None and queue.retry.active():
                queue.retry.cancel()

    def _next(self, queue: _ChannelQueue) -> None:
        if self._stopped or queue.busy or not queue.messages:
            return
        if queue.retry is not None and queue.retry.active():
            return
        queue.busy = True
        message = queue.messages[0]
        Deferred.fromCoroutine(self._deliver(queue, message)).addErrback(
            lambda f: log.failure(
                "contact: recording the delivery of message {id} to {channel} failed",
                f,
                id=message.id,
                channel=queue.name,
            )
        )

    async def _deliver(self, queue: _ChannelQueue, message: ContactMessage) -> None:
        try:
            channel = self._registry.get(queue.name)
            if channel is None:
                raise DeliveryUnavailable(f"no {queue.name!r} channel is running")
            delayed = max(0.0, self._reactor.seconds() - message.received_at)
            await channel.deliver(message, delayed)
        except DeliveryUnavailable as e:
            await self._store.attempt_failed(message.id, queue.name, str(e), final=False)
            self._retry_later(queue, str(e))
            return
        except DeliveryRefused as e:
            log.error(
                "contact: {channel} refused message {id}: {error}",
                channel=queue.name,
                id=message.id,
                error=str(e),
            )
            await self._store.attempt_failed(message.id, queue.name, str(e), final=True)
        except Exception as e:
            log.failure("contact: delivering message {id} failed", id=message.id)
            await self._store.attempt_failed(message.id, queue.name, repr(e), final=False)
            self._retry_later(queue, repr(e))
            return
        else:
            await self._store.delivered(message.id, queue.name)
            self.delivered[queue.name] += 1
            log.info(
                "contact: message {id} delivered to {channel}", id=message.id, channel=queue.name
            )
        finally:
            queue.busy = False
        queue.messages.popleft()
        queue.queued.discard(message.id)
        queue.failures = 0
        self._next(queue)

    def _retry_later(self, queue: _ChannelQueue, error: str) -> None:
        delay = RETRY_POLICY(queue.failures)
        queue.failures += 1
        log.warn(
            "contact: {channel} unavailable ({error}); {count} message(s) wait, retry in {delay:g}s",
            channel=queue.name,
            error=error,
            count=len(queue.messages),
            delay=delay,
        )
        queue.retry = self._reactor.callLater(delay, self._retry, queue)

    def _retry(self, queue: _ChannelQueue) -> None:
        queue.retry = None
        self._next(queue)
