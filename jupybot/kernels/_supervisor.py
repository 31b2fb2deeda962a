"""One child process kept running, with the semantics of Twisted's C{twisted.runner.procmon}:

- a process that dies is started again after a delay; the delay grows (Twisted's
  C{backoffPolicy} counted by L{jupybot.retry.Backoff}, the project's one backoff) while the
  process keeps dying within C{threshold} seconds of its start, and starts over once it lived
  longer. Not L{jupybot.retry.retrying}: nothing here is a call that fails, a death is an event;
- stopping sends SIGTERM, then SIGKILL after C{kill_time} seconds, and waits for the process to
  be reaped each time (a SIGKILLed process is only gone once its end was seen).

procmon's own L{ProcessMonitor} is not used as is: its protocol logs every line of the output
as it comes. Here the output reaches the owner through a L{LineBudget}: a child that floods its
pipes (or anything that writes to them) costs the reactor a read and a count per chunk, never a
log event per line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..reactor import Clock, ProcessReactor
from ..retry import Backoff

__all__ = ["Command", "LineBudget", "ProcessSupervisor"]

log = Logger()

# A child's output is read in lines of at most this many bytes (the rest of a longer line is
# dropped): one that never writes a newline must not grow jupybot's memory.
MAX_LINE = 4096
# Lines handed on per second at most, after a burst of LINE_BURST (a gateway's start writes ~20).
LINE_RATE = 20.0
LINE_BURST = 200


@dataclass(frozen=True)
class Command:
    """What to spawn, made again before every (re)start."""

    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    path: str | None = None


class LineBudget:
    """A child's output cut into lines, of which at most C{rate} a second (after a burst of
    C{burst}) are handed to C{deliver}, each at most C{max_line} bytes; the others are counted
    and dropped. Once the budget is spent a whole chunk is dropped with one C{bytes.count}: a
    4 MB flood costs the reactor about a millisecond. C{on_drop()} is called when dropping
    starts, at most once every C{warn_every} seconds."""

    def __init__(
        self,
        clock: Clock,
        deliver: Callable[[bytes], None],
        on_drop: Callable[[], None] = lambda: None,
        rate: float = LINE_RATE,
        burst: int = LINE_BURST,
        max_line: int = MAX_LINE,
        warn_every: float = 60.0,
    ) -> None:
        self._clock = clock
        self._deliver = deliver
        self._on_drop = on_drop
        self._rate = rate
        self._burst = float(burst)
        self._max_line = max_line
        self._warn_every = warn_every
        self._tokens = float(burst)
        self._refilled_at = clock.seconds()
        self._warned_at: float | None = None
        # The start of an unfinished line (at most max_line bytes), or, with _skipping, the
        # rest of a dropped line is still to come and is dropped too.
        self._partial = b""
        self._skipping = False
        self.bytes_read = 0
        self.lines_dropped = 0

    def feed(self, data: bytes) -> None:
        self.bytes_read += len(data)
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        start = 0
        while start < len(data):
            if self._tokens < 1:
                self._drop(data[start:], now)
                return
            end = data.find(b"\n", start)
            if end < 0:
                if not self._skipping:
                    room = self._max_line - len(self._partial)
                    self._partial += data[start : start + max(room, 0)]
                return
            if self._skipping:
                self._skipping = False
                self.lines_dropped += 1
            else:
                line = (self._partial + data[start:end])[: self._max_line]
                self._tokens -= 1
                self._deliver(line)
            self._partial = b""
            start = end + 1

    def _drop(self, rest: bytes, now: float) -> None:
        self.lines_dropped += rest.count(b"\n")
        self._partial = b""
        self._skipping = not rest.endswith(b"\n")
        if self._warned_at is None or now - self._warned_at >= self._warn_every:
            self._warned_at = now
            self._on_drop()


class _Child(ProcessProtocol):
    def __init__(self, supervisor: ProcessSupervisor) -> None:
        self.supervisor = supervisor
        self.ended: Deferred[None] = Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.supervisor.output.feed(data)

    def processExited(self, reason: Failure) -> None:
        # Reaped: that is its end. (processEnded waits for its pipes to close too, which a
        # child it left behind, such as an unsandboxed kernel, may hold open for ever.)
        if self.transport is not None:
            self.transport.loseConnection()
        self.supervisor._ended(self, reason)
        self.ended.callback(None)


class ProcessSupervisor:
    """Runs C{command()} until L{stop}. C{on_spawn(pid)} is told each new process,
    C{on_line(line)} the lines it prints (stdout and stderr) within a L{LineBudget},
    C{on_death(why, delay)} each unexpected end, with the delay before the next start."""

    def __init__(
        self,
        reactor: ProcessReactor,
        name: str,
        command: Callable[[], Command],
        on_line: Callable[[bytes], None],
        restart_delay: Callable[[int], float],
        on_spawn: Callable[[int], None] = lambda pid: None,
        on_death: Callable[[str, float], None] = lambda why, delay: None,
        threshold: float = 60.0,
        kill_time: float = 10.0,
    ) -> None:
        self._reactor = reactor
        self.name = name
        self._command = command
        self.on_line = on_line
        self._on_spawn = on_spawn
        self._on_death = on_death
        self.threshold = threshold
        self.kill_time = kill_time
        self._child: _Child | None = None
        self._transport: IProcessTransport | None = None
        self._started_at = 0.0
        # Deaths in a row, each within `threshold` of its start: the backoff's failures.
        self._deaths = Backoff(restart_delay)
        self._restart: IDelayedCall | None = None
        self._stopping = False
        # One budget across restarts: a child that floods and dies does not get a new burst.
        self.output = LineBudget(reactor, lambda line: self.on_line(line), self._dropping)

    def _dropping(self) -> None:
        log.warn("{name}: writes more than {rate:g} lines a second; dropping its output",
                 name=self.name, rate=LINE_RATE)  # fmt: skip

    @property
    def pid(self) -> int | None:
        """The running process's pid; None between a death and the next start."""
        pid: object = None if self._transport is None else self._transport.pid
        return pid if isinstance(pid, int) else None

    @property
    def quick_deaths(self) -> int:
        """Deaths in a row, each within C{threshold} of its start (the last one counted)."""
        return self._deaths.failures

    @property
    def restart_pending(self) -> bool:
        return self._restart is not None and self._restart.active()

    def start(self) -> None:
        self._stopping = False
        if self._child is None:
            self._spawn()

    def _spawn(self) -> None:
        self._restart = None
        command = self._command()
        child = _Child(self)
        self._started_at = self._reactor.seconds()
        self._transport = self._reactor.spawnProcess(
            child,
            command.argv[0],
            list(command.argv),
            env=command.env,
            path=command.path,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self._child = child
        pid = self.pid
        if pid is not None:
            self._on_spawn(pid)

    def _ended(self, child: _Child, reason: Failure) -> None:
        if child is not self._child:
            return
        self._child = None
        self._transport = None
        if self._stopping:
            return
        if self._reactor.seconds() - self._started_at >= self.threshold:
            self._deaths.succeeded()  # it ran long enough: back to the first delay
        delay = self._deaths.failed()
        why = "exited" if reason.check(ProcessDone) else reason.getErrorMessage()
        self._restart = self._reactor.callLater(delay, self._spawn)
        self._on_death(why, delay)

    async def stop(self) -> None:
        """No more restarts; SIGTERM, SIGKILL after C{kill_time}, and wait until it is gone."""
        self._stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        child = self._child
        if child is None:
            return
        if await self._signal_and_wait(child, "TERM"):
            return
        log.warn("{name}: still running {seconds:g}s after SIGTERM; killing it",
                 name=self.name, seconds=self.kill_time)  # fmt: skip
        if not await self._signal_and_wait(child, "KILL"):
            log.error("{name}: not reaped {seconds:g}s after SIGKILL",
                      name=self.name, seconds=self.kill_time)  # fmt: skip

    async def _signal_and_wait(self, child: _Child, signal_name: str) -> bool:
        """Send C{signal_name}; True once the process ended, False after C{kill_time}."""
        if child.ended.called:
            return True
        if self._transport is not None:
            with suppress(ProcessExitedAlready):
                self._transport.signalProcess(signal_name)
        waited: Deferred[bool] = Deferred()

        def settle(ended: bool) -> None:
            if not waited.called:
                waited.callback(ended)

        timer = self._reactor.callLater(self.kill_time, settle, False)

        def ended(_: object) -> None:
            if timer.active():
                timer.cancel()
            settle(True)

        child.ended.addCallback(ended)
        return await waited
