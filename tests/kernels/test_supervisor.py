"""The embedded gateway's process supervision, with procmon's semantics, on a dummy process
reactor (a Clock that records spawns and signals): restart delays from backoffPolicy, growing
only while the process dies within the threshold, SIGTERM then SIGKILL after the kill time,
and a stop that waits for the process to be reaped."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import AnyStr, NoReturn

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IConnector, IProcessProtocol, IProcessTransport
from twisted.internet.protocol import ClientFactory
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from jupybot.kernels._supervisor import Command, LineBudget, ProcessSupervisor
from jupybot.kernels.embedded import EmbeddedGateway
from jupybot.sandbox import Limits
from jupybot.sandbox.kernels import KernelSandboxPlan


@implementer(IProcessTransport)
class DummyProcess:
    """A spawned process as the dummy reactor hands it out: records signals, ends on demand."""

    def __init__(self, protocol: IProcessProtocol, pid: int, ignores: set[str]) -> None:
        self.proto = protocol
        self.pid = pid
        self.args: list[str] = []
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
        process.args = [a if isinstance(a, str) else a.decode() for a in args]
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


class DummyGatewayReactor(DummyProcessReactor):
    """Processes and time as above; no connection is ever made (nothing listens)."""

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: ClientFactory,
        timeout: float = 30.0,
        bindAddress: tuple[str, int] | None = None,
    ) -> IConnector:
        raise AssertionError("nothing connects: the gateway process does not listen")


@pytest.mark.skipif(os.geteuid() != 0, reason="the gateway switches users only for root")
@pytest_twisted.ensureDeferred
async def test_on_cgroup_v2_the_gateway_starts_in_a_leaf_of_its_group_as_its_user(
    tmp_path: Path,
) -> None:
    """v2 moves a process between groups only for whoever may write the procs of their common
    ancestor: the gateway (as its own user) must itself run inside the group it was given."""
    delegated = tmp_path / "cgroup" / "jupybot.service" / "sandboxes" / "kernels-1"
    delegated.mkdir(parents=True)
    plan = KernelSandboxPlan(
        mode="bubblewrap",
        user="nobody",
        limits=Limits(),
        network=False,
        read_only=(),
        cgroup_version=2,
        cgroup_parents=(("unified", str(delegated)),),
        gateway_user="nobody",
        gateway_ids=(65534, 65534),
    )
    reactor = DummyGatewayReactor()
    gateway = EmbeddedGateway(
        reactor, tmp_path / "runtime", on_ready=lambda *_: None, on_restart=lambda: None
    )
    gateway.start(plan)
    [process] = reactor.spawned
    join, leaf, setpriv, python = (
        process.args[:3],
        process.args[4],
        process.args[5:13],
        process.args[13:16],
    )
    assert join[:2] == ["/bin/sh", "-c"] and leaf == str(delegated / "gateway" / "cgroup.procs")
    # Killed with jupybot (set last by setpriv, after the credential changes that clear it).
    assert setpriv[1:] == ["--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
                           "--inh-caps=-all", "--pdeathsig=KILL", "--"]  # fmt: skip
    assert python[1:] == ["-m", "kernel_gateway"]
    work = Path(process.args[-1].split("=", 1)[1]).parent
    assert work.stat().st_uid == 65534 and (work / "kernel-sandbox.json").stat().st_uid == 65534
    await gateway.stop()
    assert not delegated.exists() and not work.exists()  # its group and directory are gone
