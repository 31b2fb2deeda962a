"""Delivers every accepted message to every channel, exactly once, however long it takes.

Per channel, messages go one at a time, oldest first. A channel that is not there yet (its bot
is still connecting) or says L{DeliveryUnavailable} is retried with backoff. A channel that
refuses a message for good (L{DeliveryRefused}: Discord will not DM the owner, the bot may not
post in the Matrix room) marks that delivery failed, kept for the owner to see and retry
(`python -m jupybot.contact list`, `retry`), says so to whoever listens (C{on_problem}: /ping),
and hands the message to the next channel of C{fallback}, recorded in the store like any
delivery, so nothing stays stuck. Success is recorded at once; after a crash the last attempt
may be repeated, which the channels' idempotence per message id absorbs.

The retries are driven by what waits, not by the store: whatever an attempt ends in (the store
unable to record it included), a channel with messages waiting has either an attempt under way
or a retry scheduled. A delivery the store cannot record (a full disk) is not made again: it is
kept here and recorded once the store takes writes again.

Each channel queue keeps a timer of its own, started by what waits, so the delays come from the
project's one L{jupybot.retry.Backoff} rather than from L{jupybot.retry.retrying}, which makes
one call again until it succeeds.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..retry import Backoff
from .api import ContactMessage, DeliveryRefused, DeliveryUnavailable
from .registry import ChannelRegistry
from .store import ContactStore

log = Logger()

# The first retry after a failed attempt, doubling up to `contact.retry_max_seconds`.
RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0


def retry_policy(maximum: float = RETRY_MAX_SECONDS) -> Callable[[int], float]:
    """2, 4, 8 ... C{maximum} s after each failed attempt in a row. No jitter: one outbox
    retries one channel, so there is no crowd of clients to spread out, and the delays stay
    exact."""
    return backoffPolicy(
        initialDelay=min(RETRY_FIRST_SECONDS, maximum),
        maxDelay=maximum,
        factor=2.0,
        jitter=lambda: 0.0,
    )


RETRY_POLICY: Callable[[int], float] = retry_policy()


class _ChannelQueue:
    def __init__(self, name: str, retry_delay: Callable[[int], float]) -> None:
        self.name = name
        self.messages: deque[ContactMessage] = deque()
        self.queued: set[int] = set()
        self.busy = False
        self.retry: IDelayedCall | None = None
        self.backoff = Backoff(retry_delay)  # failed attempts in a row, and the next delay
        # When the first of the failed attempts in a row was made, and what the last one said.
        self.failing_since: float | None = None
        self.error: str | None = None


@dataclass(frozen=True)
class ChannelBacklog:
    """What waits for one channel: how many messages, since when, and whether it fails."""

    pending: int
    oldest_received_at: float | None
    # Reactor time of the first failed attempt of those in a row; None while it delivers.
    failing_since: float | None
    error: str | None


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
        retry_delay: Callable[[int], float] = RETRY_POLICY,
    ) -> None:
        """Messages go to every one of C{channels}; one a channel refuses goes to the first of
        C{fallback} after the refusing channel (or the first of all, when it is not one)."""
        self._reactor = reactor
        self._store = store
        self._registry = registry
        self._channels = channels
        self._fallback = fallback
        self._on_problem = on_problem
        self._retry_delay = retry_delay
        self._queues = {name: _ChannelQueue(name, retry_delay) for name in channels}
        self._stopped = False
        # Deliveries made that the store could not record yet, and the retry of their records.
        self._unrecorded: set[tuple[int, str]] = set()
        self._recording: IDelayedCall | None = None
        self._record_backoff = Backoff(retry_delay)
        # Deliveries that succeeded since start, by channel; read by /metrics.
        self.delivered: Counter[str] = Counter()

    def pending(self) -> dict[str, int]:
        """How many messages wait for each channel (read by /metrics)."""
        return {name: len(queue.messages) for name, queue in self._queues.items()}

    def backlog(self) -> dict[str, ChannelBacklog]:
        """What waits for each channel (read by /ping and /metrics)."""
        return {
            name: ChannelBacklog(
                len(queue.messages),
                min((m.received_at for m in queue.messages), default=None),
                queue.failing_since if queue.messages else None,
                queue.error if queue.messages else None,
            )
            for name, queue in self._queues.items()
        }

    def waiting_messages(self) -> int:
        """How many messages wait for at least one channel."""
        return len(set().union(*(queue.queued for queue in self._queues.values())))

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
                queue = self._queues[name] = _ChannelQueue(name, self._retry_delay)
            if message.id not in queue.queued:
                queue.queued.add(message.id)
                queue.messages.append(message)
            self._next(queue)

    def stop(self) -> None:
        """No more attempts; the deliveries not recorded yet are handed to the store once
        more (it finishes what it was given before it closes)."""
        self._stopped = True
        for queue in self._queues.values():
            if queue.retry is not None and queue.retry.active():
                queue.retry.cancel()
        if self._recording is not None and self._recording.active():
            self._recording.cancel()
        self._record_deliveries()

    def _next(self, queue: _ChannelQueue) -> None:
        if self._stopped or queue.busy or not queue.messages:
            return
        if queue.retry is not None and queue.retry.active():
            return
        queue.busy = True
        message = queue.messages[0]
        attempt = Deferred.fromCoroutine(self._attempt(queue, message))
        attempt.addBoth(self._settle, queue, message)

    async def _attempt(self, queue: _ChannelQueue, message: ContactMessage) -> bool:
        """One attempt to deliver C{message} on C{queue}'s channel: True when this channel is
        done with it (delivered, or refused and handed on), False to try again later."""
        try:
            channel = self._registry.get(queue.name)
            if channel is None:
                raise DeliveryUnavailable(f"no {queue.name!r} channel is running")
            delayed = max(0.0, self._reactor.seconds() - message.received_at)
            await channel.deliver(message, delayed)
        except DeliveryUnavailable as e:
            self._failing(queue, str(e))
            # Bookkeeping only: the retry does not wait for it, nor depend on it.
            self._store.attempt_failed(message.id, queue.name, str(e), False).addErrback(
                self._not_recorded, message, queue.name, "attempt"
            )
            return False
        except DeliveryRefused as e:
            log.error(
                "contact: {channel} refused message {id}: {error}",
                channel=queue.name,
                id=message.id,
                error=str(e),
            )
            queue.failing_since = None  # it answers: what fails is this message
            self._tell(queue.name, f"refused message {message.id}: {e}")
            try:
                await self._store.attempt_failed(message.id, queue.name, str(e), True)
                await self._fall_back(message, queue.name)
            except Exception:
                # Tried again later: refused again, then recorded and handed on.
                self._not_recorded(Failure(), message, queue.name, "refusal")
                return False
            return True
        except Exception as e:
            log.failure("contact: delivering message {id} failed", id=message.id)
            self._failing(queue, repr(e))
            self._store.attempt_failed(message.id, queue.name, repr(e), False).addErrback(
                self._not_recorded, message, queue.name, "attempt"
            )
            return False
        queue.failing_since = queue.error = None
        self.delivered[queue.name] += 1
        log.info("contact: message {id} delivered to {channel}", id=message.id, channel=queue.name)
        # Awaited, though it never fails: the next delivery waits for this record's commit
        # (which many share), so the outbox goes at the store's pace and leaves the reactor to
        # the visitors (not awaiting it cost 60% of the accepted rate in bench/contact.py).
        await self._record_delivery(message.id, queue.name)
        self._tell(queue.name, None)
        return True

    def _settle(self, done: bool | Failure, queue: _ChannelQueue, message: ContactMessage) -> None:
        """After every attempt, whatever it ended in: the next message, or a retry."""
        queue.busy = False
        if isinstance(done, Failure):  # a bug above: the message stays, and is tried again
            log.failure("contact: an attempt to deliver message {id} failed", done, id=message.id)
            done = False
        if done:
            if queue.messages and queue.messages[0] is message:
                queue.messages.popleft()
            queue.queued.discard(message.id)
            queue.backoff.succeeded()
            self._next(queue)
        else:
            self._retry_later(queue)

    def _failing(self, queue: _ChannelQueue, error: str) -> None:
        if queue.failing_since is None:
            queue.failing_since = self._reactor.seconds()
        queue.error = error

    def _not_recorded(self, failure: Failure, message: ContactMessage, channel: str, what: str) -> None:  # fmt: skip
        log.warn(
            "contact: the store could not record the {what} of message {id} to {channel}: {error}",
            what=what,
            id=message.id,
            channel=channel,
            error=failure.getErrorMessage(),
        )

    def _record_delivery(self, message_id: int, channel: str) -> Deferred[None]:
        """Record a delivery; one the store cannot take is kept here (never delivered again)
        and recorded on a backoff until it can. Fires once the store answered, never with an
        error."""

        def recorded(_: object) -> None:
            self._unrecorded.discard((message_id, channel))
            self._record_backoff.succeeded()

        def failed(failure: Failure) -> None:
            if (message_id, channel) not in self._unrecorded:
                log.failure(
                    "contact: recording the delivery of message {id} to {channel} failed; "
                    "it is recorded once the store can",
                    failure,
                    id=message_id,
                    channel=channel,
                )
            self._unrecorded.add((message_id, channel))
            if not self._stopped and (self._recording is None or not self._recording.active()):
                delay = self._record_backoff.failed()
                self._recording = self._reactor.callLater(delay, self._record_deliveries)

        return self._store.delivered(message_id, channel).addCallbacks(recorded, failed)

    def _record_deliveries(self) -> None:
        self._recording = None
        for message_id, channel in sorted(self._unrecorded):
            self._record_delivery(message_id, channel)

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

    def _retry_later(self, queue: _ChannelQueue) -> None:
        if self._stopped or (queue.retry is not None and queue.retry.active()):
            return
        delay = queue.backoff.failed()
        log.warn(
            "contact: {channel} unavailable ({error}); {count} message(s) wait, retry in {delay:g}s",
            channel=queue.name,
            error=queue.error or "the store could not record the attempt",
            count=len(queue.messages),
            delay=delay,
        )
        queue.retry = self._reactor.callLater(delay, self._retry, queue)

    def _retry(self, queue: _ChannelQueue) -> None:
        queue.retry = None
        self._next(queue)
