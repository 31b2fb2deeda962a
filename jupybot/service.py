"""The service tree: one L{Part} per enabled feature under one L{JupybotService}.

Parts start in the order they were added and stop in reverse order, one after another, each
bounded by the shutdown timeout, so that a bot stops before the kernels it uses and kernels stop
before the gateway that hosts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from twisted.application.service import IServiceCollection, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from .aio import deferred_from_coroutine

__all__ = ["AsyncioPart", "JupybotService", "Part"]

RUNNING = "running"
STARTING = "starting"
DISABLED = "disabled"
STOPPED = "stopped"
# A running part that does not serve right now (a lost connection, a restarting process).
DOWN = "down"

# The whole server, as /ping sums it up: "ok" only when every enabled part runs.
OK = "ok"
DEGRADED = "degraded"
STOPPING = "stopping"


class Part(MultiService):
    """One feature of jupybot, with a status shown by /ping.

    Subclasses override L{start_part} and L{stop_part} (either may return a Deferred) and may
    add Twisted services of their own as children.
    """

    log = Logger()

    name: str
    # Seconds its stop takes at least, whatever `shutdown.timeout_seconds` says (a stop given
    # up halfway would leave processes running).
    stop_needs: float = 0.0
    # Whether the site waits for this part to start before it listens.
    site_waits: bool = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.setName(name)
        self._state = STARTING
        self._start_settled: list[Deferred[None]] = []
        # What /ping shows beside the status, when there is more to say (how it runs).
        self.detail: str | None = None

    @property
    def status(self) -> str:
        """C{running}, C{starting}, C{stopped}, C{failed: <why>}, or C{down: <why>} while a
        running part does not serve (L{problem})."""
        if self._state == RUNNING:
            problem = self.problem()
            if problem is not None:
                return f"{DOWN}: {problem}"
        return self._state

    def problem(self) -> str | None:
        """Why this part, started, does not serve right now; None while it does. Parts with a
        connection or a child process to watch override it."""
        return None

    def start_part(self) -> Deferred[None] | None:
        return None

    def stop_part(self) -> Deferred[None] | None:
        return None

    def startService(self) -> None:
        super().startService()
        self._state = STARTING
        d = maybeDeferred(self.start_part)
        d.addCallbacks(self._started, self.fail)
        d.addBoth(self._settle)

    def when_started(self) -> Deferred[None]:
        """Fires once the start has settled: running, or failed (never with an error)."""
        if self._state != STARTING:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._start_settled.append(d)
        return d

    def _settle(self, _: object) -> None:
        waiting, self._start_settled = self._start_settled, []
        for d in waiting:
            d.callback(None)

    def _started(self, _: object) -> None:
        if self._state == STARTING:
            self._state = RUNNING
            self.log.info("{part}: running", part=self.name)

    def fail(self, reason: Failure | str) -> None:
        """Mark the part failed; everyone else keeps being served."""
        message = reason if isinstance(reason, str) else reason.getErrorMessage()
        self._state = f"failed: {message}"
        if isinstance(reason, Failure):
            self.log.failure("{part}: failed: {message}", reason, part=self.name, message=message)
        else:
            self.log.error("{part}: failed: {message}", part=self.name, message=message)

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop_part_then_children())

    async def _stop_part_then_children(self) -> None:
        # Named so that no part's own helper overrides it by chance: the contact and kernels
        # parts each had an `_stop`, and never reached `stopped`.
        try:
            await maybeDeferred(self.stop_part)
        finally:
            await maybeDeferred(MultiService.stopService, self)
            self._state = STOPPED


class AsyncioPart(Part):
    """A part whose work is an asyncio coroutine (matrix-nio, discord.py) on the shared loop.

    L{run} is started as a task when the part starts and cancelled, then awaited, when it stops.
    It calls L{ready} once it is serving. The site does not wait for it: a chat network may be
    unreachable for hours while the part retries (/ping says so meanwhile).
    """

    site_waits = False

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._task: Deferred[None] | None = None
        self._ready: Deferred[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def ready(self) -> None:
        if self._ready is not None and not self._ready.called:
            self._ready.callback(None)

    def start_part(self) -> Deferred[None]:
        self._ready = Deferred()
        self._task = deferred_from_coroutine(self._run_guarded())
        return self._ready

    async def _run_guarded(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            failure = Failure()
            if self._ready is not None and not self._ready.called:
                self._ready.errback(failure)
            else:
                self.fail(failure)

    def stop_part(self) -> Deferred[None] | None:
        task, self._task = self._task, None
        if task is None or task.called:
            return None
        task.addErrback(lambda f: f.trap(Exception) and None)
        task.cancel()
        return task


class JupybotService(MultiService):
    """The top of the tree: named parts in start order, plus the names of disabled parts."""

    log = Logger()

    def __init__(self, clock: IReactorTime, stop_timeout: float) -> None:
        super().__init__()
        self._clock = clock
        self._stop_timeout = stop_timeout
        self._disabled: dict[str, str] = {}
        self._order: list[str] = []
        self._stopping = False
        # Set by the twistd plugin: twistd asks the application for its log observer after the
        # service is built, which is how jupybot chooses text or JSON logs and redaction.
        self.log_observer_factory: Callable[[], ILogObserver] | None = None

    def setServiceParent(self, parent: IServiceCollection) -> None:
        super().setServiceParent(parent)
        if self.log_observer_factory is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.log_observer_factory())

    def add_part(self, part: Part) -> Part:
        part.setServiceParent(self)
        self._order.append(part.name)
        return part

    def add_disabled(self, name: str, reason: str) -> None:
        self._disabled[name] = reason
        self._order.append(name)
        self.log.info("{part}: disabled ({reason})", part=name, reason=reason)

    def statuses(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for name in self._order:
            if name in self._disabled:
                result[name] = DISABLED
            else:
                part = self.getServiceNamed(name)
                result[name] = part.status if isinstance(part, Part) else RUNNING
        return result

    def overall(self) -> str:
        """C{ok} when every enabled part runs; else C{stopping}, C{starting} (a part still
        starts) or C{degraded} (a part failed, is down, or stopped)."""
        if self._stopping:
            return STOPPING
        statuses = [status for status in self.statuses().values() if status != DISABLED]
        if all(status == RUNNING for status in statuses):
            return OK
        if STARTING in statuses:
            return STARTING
        return DEGRADED

    def started_before(self, part: Part) -> Deferred[None]:
        """Fires once every part added before C{part} that the site waits for (not the chat
        networks) has started or failed: the site listens only then, so no request reaches a
        part that is not up yet."""
        earlier = []
        for child in self:
            if child is part:
                break
            if isinstance(child, Part) and child.site_waits:
                earlier.append(child.when_started())
        return DeferredList(earlier).addCallback(lambda _: None)

    def details(self) -> dict[str, str]:
        """Each running part's L{Part.detail}, where it has one."""
        return {
            part.name: part.detail
            for part in self
            if isinstance(part, Part) and part.detail is not None
        }

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)  # marks us stopped; the children are stopped below
        self._stopping = True
        return Deferred.fromCoroutine(self._stop_children_in_reverse())

    async def _stop_children_in_reverse(self) -> None:
        for child in reversed(list(self)):
            d = maybeDeferred(child.stopService)
            needs = child.stop_needs if isinstance(child, Part) else 0.0
            d.addTimeout(max(self._stop_timeout, needs), self._clock)
            try:
                await d
            except Exception as e:
                self.log.error(
                    "{part}: did not stop cleanly: {error}",
                    part=child.name,
                    error=str(e) or type(e).__name__,
                )
