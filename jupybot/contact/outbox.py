"""Delivers every accepted message to every channel, exactly once, however long it takes.

Per channel, messages go one at a time, oldest first. A channel that is not there yet (its bot
is still connecting) or says L{DeliveryUnavailable} is retried with backoff. A channel that
refuses a message for good (L{DeliveryRefused}: Discord will not DM the owner, the bot may not
post in the Matrix room) marks that delivery failed, kept for the owner to see and retry
(`python -m jupybot.contact list`, `retry`), says so to whoever listens (C{on_problem}: /ping),
and hands the message to the next channel of C{fallback}, recorded in the store like any
delivery, so nothing stays stuck. Success is recorded at once; after a crash the last attempt
may be repeated, which the channels' idempotence per message id absorbs.
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


# What a channel's trouble is (None: it delivers again), for /ping.
ProblemListener = Callable[[str, str | None], None]


class Outbox:
    def __init__(
        self,
        reactor: IReactorTime,
        store: ContactStore,
        registry: ChannelRegistry,
        channels: tuple[str, ...],
        fallback: tuple[str, ...] = (),
        on_problem: ProblemListener | None = None,
    ) -> None:
        """Messages go to every one of C{channels}; one a channel refuses goes to the first of
        C{fallback} after the refusing channel (or the first of all, when it is not one)."""
        self._reactor = reactor
        self._store = store
        self._registry = registry
        self._channels = channels
        self._fallback = fallback
        self._on_problem = on_problem
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
        for name in channels or self._channels:
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
            # The retry first: a store that cannot record the attempt (a full disk) must not
            # leave the queue with no retry at all.
            self._retry_later(queue, str(e))
            await self._record(message, queue, self._store.attempt_failed, str(e), False)
            return
        except DeliveryRefused as e:
            log.error(
                "contact: {channel} refused message {id}: {error}",
                channel=queue.name,
                id=message.id,
                error=str(e),
            )
            self._tell(queue.name, f"refused message {message.id}: {e}")
            if not await self._record(message, queue, self._store.attempt_failed, str(e), True):
                return
            await self._fall_back(message, queue.name)
        except Exception as e:
            log.failure("contact: delivering message {id} failed", id=message.id)
            self._retry_later(queue, repr(e))
            await self._record(message, queue, self._store.attempt_failed, repr(e), False)
            return
        else:
            if not await self._record(message, queue, self._store.delivered):
                return  # delivered again later: channels take a message twice as once
            self.delivered[queue.name] += 1
            log.info(
                "contact: message {id} delivered to {channel}", id=message.id, channel=queue.name
            )
            self._tell(queue.name, None)
        finally:
            queue.busy = False
        queue.messages.popleft()
        queue.queued.discard(message.id)
        queue.failures = 0
        self._next(queue)

    async def _record(
        self,
        message: ContactMessage,
        queue: _ChannelQueue,
        write: Callable[..., Deferred[None]],
        *args: object,
    ) -> bool:
        """C{write(message.id, queue.name, *args)} in the store; False (logged, and the message
        tried again later) when the store could not take it."""
        try:
            await write(message.id, queue.name, *args)
        except Exception:
            log.failure(
                "contact: recording the delivery of message {id} to {channel} failed",
                id=message.id,
                channel=queue.name,
            )
            if queue.retry is None or not queue.retry.active():
                self._retry_later(queue, "the store could not record the delivery")
            return False
        return True

    def _tell(self, channel: str, problem: str | None) -> None:
        if self._on_problem is not None:
            self._on_problem(channel, problem)

    def next_fallback(self, refused_by: str) -> str | None:
        """Where a message C{refused_by} a channel goes next, if anywhere."""
        order = self._fallback
        after = order[order.index(refused_by) + 1 :] if refused_by in order else order
        return next((name for name in after if name != refused_by), None)

    async def _fall_back(self, message: ContactMessage, refused_by: str) -> None:
        fallback = self.next_fallback(refused_by)
        if fallback is None:
            log.error(
                "contact: message {id} has no channel left to try after {channel} "
                "(contact.fallback_to); it is kept: python -m jupybot.contact list",
                id=message.id,
                channel=refused_by,
            )
            return
        await self._store.add_delivery(message.id, fallback)
        log.warn(
            "contact: message {id} goes to {fallback} instead of {channel}",
            id=message.id,
            fallback=fallback,
            channel=refused_by,
        )
        self.enqueue(message, (fallback,))

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
