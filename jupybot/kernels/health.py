"""Is the Kernel Gateway answering? A periodic `GET /api` (which every Jupyter gateway serves),
so that /ping says so when a gateway's process runs but does not answer (stopped, hung,
unreachable), and not only when it died."""

from __future__ import annotations

from collections.abc import Callable

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent

from ..reactor import NetworkReactor
from .rest import quiet_pool

__all__ = ["GatewayProbe"]

log = Logger()

# Seconds between probes, and how long one may take: a hung gateway shows within 15 s.
PROBE_INTERVAL = 10.0
PROBE_TIMEOUT = 5.0


class GatewayProbe:
    """Asks C{target()} (the gateway's base URL and its headers, or None while there is none)
    every L{PROBE_INTERVAL} seconds; L{problem} is why the last answer was not a success."""

    def __init__(
        self,
        reactor: NetworkReactor,
        target: Callable[[], tuple[str, dict[bytes | str, list[bytes | str]]] | None],
        http: HTTPClient | None = None,
    ) -> None:
        self._reactor = reactor
        self._target = target
        self._http = http or HTTPClient(Agent(reactor, pool=quiet_pool(reactor)))
        self.problem: str | None = None
        self._loop = LoopingCall(self.probe)
        self._loop.clock = IReactorTime(reactor)

    def start(self) -> None:
        if not self._loop.running:
            self._loop.start(PROBE_INTERVAL, now=False).addErrback(
                lambda f: log.failure("kernels: the gateway probe stopped", f)
            )

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def reset(self) -> None:
        """The gateway just said it serves (a restart): no old problem stands."""
        self.problem = None

    def probe(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._probe())

    async def _probe(self) -> None:
        target = self._target()
        if target is None:
            return
        url, headers = target
        problem: str | None
        try:
            response = await self._http.get(url + "/api", headers=headers, timeout=PROBE_TIMEOUT)
            await response.content()
        except Exception as e:
            problem = f"the Kernel Gateway does not answer ({type(e).__name__})"
        else:
            problem = (
                None if response.code == 200 else f"the Kernel Gateway answers {response.code}"
            )
        if problem != self.problem:
            if problem is None:
                log.info("kernels: the Kernel Gateway answers again")
            else:
                log.warn("kernels: {problem}", problem=problem)
        self.problem = problem
