"""One child process kept running, with the semantics of Twisted's C{twisted.runner.procmon}:

- a process that dies is started again after a delay; the delay grows (Twisted's
  C{backoffPolicy}, the project's one backoff) while the process keeps dying within
  C{threshold} seconds of its start, and starts over once it lived longer;
- stopping sends SIGTERM, then SIGKILL after C{kill_time} seconds, and waits for the process to
  be reaped each time (a SIGKILLed process is only gone once its end was seen).

procmon's own L{ProcessMonitor} is not used as is: its protocol logs the output, where the
embedded gateway's owner must read it (the "is available at" line says it serves).
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

from ..reactor import ProcessReactor

__all__ = ["Command", "ProcessSupervisor"]

log = Logger()

# A child's output is read in lines of at most this many bytes: one that never writes a newline
# (a kernel sharing the gateway's stdout) must not grow jupybot's memory.
MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Command:
    """What to spawn, made again before every (re)start."""

    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    path: str | None = None


class _Child(ProcessProtocol):
    def __init__(self, supervisor: ProcessSupervisor) -> None:
        self.supervisor = supervisor
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            lines.append(self._buffer[:MAX_LINE])
            self._buffer = b""
        for line in lines:
            self.supervisor.on_line(line)

    def processExited(self, reason: Failure) -> None:
        # Reaped: that is its end. (processEnded waits for its pipes to close too, which a
        # child it left behind, such as an unsandboxed kernel, may hold open for ever.)
        if self.transport is not None:
            self.transport.loseConnection()
        self.supervisor._ended(self, reason)
        self.ended.callback(None)


class ProcessSupervisor:
    """Runs C{command()} until L{stop}. C{on_spawn(pid)} is told each new process,
    C{on_line(line)} each line it prints (stdout and stderr), C{on_death(why, delay)} each
    unexpected end, with the delay before the next start."""

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
        self._restart_delay = restart_delay
        self._on_spawn = on_spawn
        self._on_death = on_death
        self.threshold = threshold
        self.kill_time = kill_time
        self._child: _Child | None = None
        self._transport: IProcessTransport | None = None
        self._started_at = 0.0
        # Deaths in a row, each within `threshold` of its start: the backoff's attempt number.
        self.quick_deaths = 0
        self._restart: IDelayedCall | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The running process's pid; None between a death and the next start."""
        pid: object = None if self._transport is None else self._transport.pid
        return pid if isinstance(pid, int) else None

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
        if self._reactor.seconds() - self._started_at < self.threshold:
            self.quick_deaths += 1
        else:
            self.quick_deaths = 1
        delay = self._restart_delay(self.quick_deaths - 1)
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
