"""The embedded gateway's process supervision, with procmon's semantics, on a dummy process
reactor (a Clock that records spawns and signals): restart delays from backoffPolicy, growing
only while the process dies within the threshold, SIGTERM then SIGKILL after the kill time,
and a stop that waits for the process to be reaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import AnyStr, NoReturn

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from jupybot.kernels._supervisor import Command, LineBudget, ProcessSupervisor


@implementer(IProcessTransport)
class DummyProcess:
    """A spawned process as the dummy reactor hands it out: records signals, ends on demand."""

    def __init__(self, protocol: IProcessProtocol, pid: int, ignores: set[str]) -> None:
        self.proto = protocol
        self.pid = pid
        self.signals: list[str] = []
        self._ignores = ignores

    def signalProcess(self, name: str | int) -> None:
        assert isinstance(name, str)
        self.signals.append(name)
        if name not in self._ignores:
            self.end(ProcessTerminated(signal=15 if name == "TERM" else 9))

    def end(self, reason: Exception) -> None:
        self.proto.processExited(Failure(reason))

    # The rest of IProcessTransport: the supervisor never writes to its process or closes one
    # of its pipes, and asks no address.
    def _unused(self, *args: object) -> NoReturn:
        raise AssertionError("the supervisor does not use this")

    getHost = getPeer = write = writeSequence = writeToChild = _unused
    closeChildFD = closeStdin = closeStdout = closeStderr = _unused

    def loseConnection(self) -> None:
        self.signals.append("closed pipes")


class DummyProcessReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[DummyProcess] = []
        self.ignores: set[str] = set()

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[AnyStr, AnyStr] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> DummyProcess:
        process = DummyProcess(processProtocol, 1000 + len(self.spawned), self.ignores)
        processProtocol.makeConnection(process)
        self.spawned.append(process)
        return process


def supervised(reactor: DummyProcessReactor) -> tuple[ProcessSupervisor, list[str]]:
    events: list[str] = []
    supervisor = ProcessSupervisor(
        reactor,
        "gateway",
        lambda: Command(["gateway"]),
        on_line=lambda line: events.append(line.decode()),
        restart_delay=lambda attempt: 2.0**attempt,  # 1, 2, 4...
        on_spawn=lambda pid: events.append(f"spawned {pid}"),
        on_death=lambda why, delay: events.append(f"died, again in {delay:g}"),
        threshold=60,
        kill_time=10,
    )
    return supervisor, events


def test_a_process_that_keeps_dying_quickly_waits_longer_each_time() -> None:
    reactor = DummyProcessReactor()
    supervisor, events = supervised(reactor)
    supervisor.start()
    for expected in (1, 2, 4):
        reactor.spawned[-1].end(ProcessDone(0))
        assert events[-1] == f"died, again in {expected}"
        assert supervisor.pid is None and supervisor.restart_pending
        reactor.advance(expected - 0.5)
        count = len(reactor.spawned)
        reactor.advance(0.5)
        assert len(reactor.spawned) == count + 1
    assert supervisor.pid == reactor.spawned[-1].pid


def test_a_process_that_lived_past_the_threshold_restarts_after_the_first_delay() -> None:
    reactor = DummyProcessReactor()
    supervisor, events = supervised(reactor)
    supervisor.start()
    reactor.spawned[-1].end(ProcessDone(0))
    reactor.advance(1)
    reactor.spawned[-1].end(ProcessDone(0))
    assert events[-1] == "died, again in 2"
    reactor.advance(2)
    reactor.advance(60)  # healthy for the threshold
    reactor.spawned[-1].end(ProcessDone(0))
    assert events[-1] == "died, again in 1"


def test_output_lines_reach_the_owner_even_split_across_reads() -> None:
    reactor = DummyProcessReactor()
    supervisor, events = supervised(reactor)
    supervisor.start()
    reactor.spawned[0].proto.childDataReceived(1, b"Kernel Gateway is avail")
    reactor.spawned[0].proto.childDataReceived(2, b"able\nnext")
    assert events == ["spawned 1000", "Kernel Gateway is available"]


def test_stop_sends_sigterm_and_waits_for_the_end_without_restarting() -> None:
    reactor = DummyProcessReactor()
    supervisor, _ = supervised(reactor)
    supervisor.start()
    stopped = Deferred.fromCoroutine(supervisor.stop())
    assert reactor.spawned[0].signals == ["TERM", "closed pipes"]
    assert stopped.called
    reactor.advance(3600)
    assert len(reactor.spawned) == 1


def test_a_process_ignoring_sigterm_gets_sigkill_after_the_kill_time_and_is_waited_for() -> None:
    reactor = DummyProcessReactor()
    reactor.ignores = {"TERM", "KILL"}
    supervisor, _ = supervised(reactor)
    supervisor.start()
    stopped = Deferred.fromCoroutine(supervisor.stop())
    reactor.advance(9.9)
    assert reactor.spawned[0].signals == ["TERM"]  # (no "closed pipes": it did not end)
    reactor.advance(0.1)
    assert reactor.spawned[0].signals == ["TERM", "KILL"]
    assert not stopped.called  # not reaped yet: a stop does not end before the process does
    reactor.spawned[0].end(ProcessTerminated(signal=9))
    assert stopped.called


def test_stop_during_the_restart_delay_cancels_the_restart() -> None:
    reactor = DummyProcessReactor()
    supervisor, _ = supervised(reactor)
    supervisor.start()
    reactor.spawned[0].end(ProcessDone(0))
    stopped = Deferred.fromCoroutine(supervisor.stop())
    assert stopped.called
    reactor.advance(3600)
    assert len(reactor.spawned) == 1


def test_output_beyond_the_line_budget_is_counted_and_dropped_not_logged() -> None:
    """A child (or a kernel sharing its pipes) that floods: a burst of lines, then a few a
    second; a 4 MB flood costs a count, and lines are cut at their maximum length."""
    clock = Clock()
    lines: list[bytes] = []
    drops: list[float] = []
    budget = LineBudget(
        clock, lines.append, lambda: drops.append(clock.seconds()), rate=10, burst=5, max_line=8
    )
    budget.feed(b"a very long first line\nb\nc\nd\ne\nf\ng\n")
    assert lines == [b"a very l", b"b", b"c", b"d", b"e"]
    flood = b"x" * 1023 + b"\n"
    for _ in range(4 * 1024):
        budget.feed(flood)
    assert lines[-1] == b"e" and budget.bytes_read > 4 * 1024 * 1024
    assert budget.lines_dropped == 2 + 4 * 1024 and drops == [0.0]
    clock.advance(0.5)  # five lines' worth of budget again
    budget.feed(b"half a li")
    budget.feed(b"ne\nnext\n")
    assert lines[-2:] == [b"half a l", b"next"]


def test_a_line_cut_by_the_budget_is_dropped_whole() -> None:
    clock = Clock()
    lines: list[bytes] = []
    budget = LineBudget(clock, lines.append, rate=1, burst=1)
    budget.feed(b"one\ntw")
    clock.advance(1)
    budget.feed(b"o\nthree\n")  # "two" began while the budget was spent: none of it is read
    assert lines == [b"one", b"three"]
