"""The kernel manager's starts on fakes (tests/kernels/fake_gateway.py): one kernel per room
however runs race, starts in turn with each waiting room told its place, the warm pool."""

from __future__ import annotations

from typing import TypeVar

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from jupybot.config import ConfigError, parse_config
from jupybot.kernels import ExecutionResult, KernelLimitReached
from jupybot.kernels.starts import machine_start_concurrency
from tests.kernels.fake_gateway import FakeGateway, WaitRecorder

T = TypeVar("T")


def result_of(d: Deferred[T]) -> T:
    """What C{d} has fired with (it must have, and keeps); a failure is raised."""
    outcome: list[T | Failure] = []

    def seen(value: T | Failure) -> T | Failure:
        outcome.append(value)
        return value

    d.addBoth(seen)
    assert outcome, "still waiting"
    [value] = outcome
    if isinstance(value, Failure):
        d.addErrback(lambda _: None)  # raised here: handled
        value.raiseException()
    return value


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(MemoryReactorClock())


# One kernel per room.


def test_two_runs_racing_into_a_new_room_share_one_kernel(gateway: FakeGateway) -> None:
    manager = gateway.manager()
    first = manager.execute("room", "a = 1", WaitRecorder())
    second = manager.execute("room", "print(a)", WaitRecorder())
    gateway.answer_all()
    assert result_of(first).status == result_of(second).status == "ok"
    [kernel] = gateway.kernels
    assert kernel.ran == ["a = 1", "print(a)"]
    assert [handle.name for handle in manager.kernels("room")] == ["python3"]


def test_a_run_racing_a_start_command_runs_in_the_kernel_it_starts(gateway: FakeGateway) -> None:
    manager = gateway.manager()
    started = manager.start("room", name="calc")
    run = manager.execute("room", "1 + 1", WaitRecorder())
    gateway.answer_all()
    assert result_of(started).name == "calc"
    assert result_of(run).status == "ok"
    [kernel] = gateway.kernels
    assert kernel.ran == ["1 + 1"]


def test_runs_waiting_for_a_start_that_fails_are_told_why(gateway: FakeGateway) -> None:
    manager = gateway.manager()
    first = manager.execute("room", "1", WaitRecorder())
    second = manager.execute("room", "2", WaitRecorder())
    [kernel] = gateway.kernels
    kernel.answering.errback(KernelLimitReached("no room on the gateway"))
    for run in (first, second):
        with pytest.raises(KernelLimitReached, match="no room on the gateway"):
            result_of(run)
    assert manager.kernels("room") == []
    retry = manager.execute("room", "3", WaitRecorder())
    gateway.answer_all()
    assert result_of(retry).status == "ok"


def test_rooms_get_a_kernel_each(gateway: FakeGateway) -> None:
    manager = gateway.manager()
    runs = [manager.execute(room, "1", WaitRecorder()) for room in ("a", "b", "a", "b")]
    gateway.answer_all()
    assert [result_of(run).status for run in runs] == ["ok"] * 4
    assert len(gateway.kernels) == 2
    assert [len(kernel.ran) for kernel in gateway.kernels] == [2, 2]


# Starts in turn.


def test_starts_wait_their_turn_and_each_room_is_told_its_place(gateway: FakeGateway) -> None:
    manager = gateway.manager(start_concurrency=2)
    rooms = [WaitRecorder() for _ in range(5)]
    runs = [manager.execute(f"room-{n}", "1", room) for n, room in enumerate(rooms)]
    assert len(gateway.starting) == 2
    # 0: being started (or next); the rest are told how many starts wait before theirs.
    assert [room.waits for room in rooms] == [[0], [0], [0], [1], [2]]
    gateway.starting[0].answer()
    assert len(gateway.starting) == 2
    assert rooms[0].waits[-1] is None and result_of(runs[0]).status == "ok"
    assert [room.waits[-1] for room in rooms[2:]] == [0, 0, 1]
    while gateway.starting:
        gateway.starting[0].answer()
        assert len(gateway.starting) <= 2
    assert [result_of(run).status for run in runs] == ["ok"] * 5
    assert all(room.waits[-1] is None for room in rooms)


def test_a_start_given_up_while_queued_leaves_its_place(gateway: FakeGateway) -> None:
    manager = gateway.manager(start_concurrency=1)
    first = manager.execute("room-0", "1", WaitRecorder())
    given_up = manager.start("room-1")
    last = WaitRecorder()
    run = manager.execute("room-2", "1", last)
    given_up.cancel()
    with pytest.raises(CancelledError):
        result_of(given_up)
    assert last.waits == [1, 0]
    gateway.answer_all()
    assert result_of(first).status == result_of(run).status == "ok"
    assert len(gateway.kernels) == 2 and manager.kernels("room-1") == []


def test_a_run_given_up_does_not_stop_its_rooms_start(gateway: FakeGateway) -> None:
    manager = gateway.manager()
    given_up = manager.execute("room", "1", WaitRecorder())
    given_up.cancel()
    with pytest.raises(CancelledError):
        result_of(given_up)
    run = manager.execute("room", "2", WaitRecorder())
    gateway.answer_all()
    assert result_of(run).status == "ok"
    [kernel] = gateway.kernels
    assert kernel.ran == ["2"]


def test_a_start_times_out_from_its_attempt_not_from_its_place_in_line(
    gateway: FakeGateway,
) -> None:
    """Each kernel here takes 20 s of a 30 s timeout to answer; the third waits 40 s first."""
    manager = gateway.manager(start_concurrency=1, request_timeout_seconds=30.0)
    runs = [manager.execute(f"room-{n}", "1", WaitRecorder()) for n in range(3)]
    for _ in range(3):
        [kernel] = gateway.starting
        attempt = gateway.reactor.seconds()
        gateway.reactor.advance(20)
        assert gateway.reactor.seconds() - attempt < manager._config.request_timeout_seconds
        kernel.answer()
    assert [result_of(run).status for run in runs] == ["ok"] * 3


# The warm pool.


def test_a_new_rooms_first_run_takes_the_warm_kernel_and_the_pool_refills(
    gateway: FakeGateway,
) -> None:
    manager = gateway.manager(prestart=1)
    manager.start_warm_pool()
    gateway.answer_all()
    [warm] = gateway.kernels
    room = WaitRecorder()
    run = manager.execute("room", "1", room)
    assert result_of(run).status == "ok"  # at once: no start waited for
    assert warm.ran == ["1"] and room.waits == []  # nothing to tell: it never waited
    current = manager.current("room")
    assert current is not None and current.kernel_id == warm.kernel_id
    assert len(gateway.starting) == 1  # the refill
    gateway.answer_all()
    assert manager.pool.ready == 1


def test_a_room_waiting_in_line_takes_a_pool_kernel_that_lands_first(
    gateway: FakeGateway,
) -> None:
    manager = gateway.manager(prestart=1, start_concurrency=1)
    manager.start_warm_pool()
    [warm] = gateway.starting
    run = manager.execute("room", "1", WaitRecorder())
    warm.answer()
    assert result_of(run).status == "ok" and warm.ran == ["1"]
    assert len(gateway.kernels) == 2  # the warm one, and its refill: no extra start


def test_a_used_kernel_never_goes_back_to_the_pool(gateway: FakeGateway) -> None:
    manager = gateway.manager(prestart=1)
    manager.start_warm_pool()
    gateway.answer_all()
    result_of(manager.execute("alice", "secret = 1", WaitRecorder()))
    gateway.answer_all()
    [alices] = manager.kernels("alice")
    result_of(manager.stop("alice"))
    result_of(manager.execute("bob", "secret", WaitRecorder()))
    gateway.answer_all()
    [bobs] = manager.kernels("bob")
    assert bobs.kernel_id != alices.kernel_id
    assert [k.kernel_id for k in gateway.kernels if k.gone_reason] == [alices.kernel_id]
    assert all("secret = 1" not in kernel.ran for kernel in gateway.alive)


def test_the_pool_leaks_no_kernel(gateway: FakeGateway) -> None:
    manager = gateway.manager(prestart=1)
    manager.start_warm_pool()
    gateway.answer_all()
    [first] = gateway.kernels
    first.lose("culled by the gateway")  # a pooled kernel dies: another takes its place
    gateway.answer_all()
    assert manager.pool.ready == 1 and len(gateway.alive) == 1
    # The gateway restarts: the pooled kernel is gone, and so is a start under way on it.
    result_of(manager.execute("room", "1", WaitRecorder()))
    [under_way] = gateway.starting
    manager.gateway_lost("the gateway restarted")
    under_way.answer()
    assert gateway.alive == [] and manager.pool.ready == 0
    manager.use_gateway(gateway)
    gateway.answer_all()
    assert manager.pool.ready == 1 and len(gateway.alive) == 1
    # Stopping shuts down what the pool holds and what it was starting.
    result_of(manager.execute("room", "1", WaitRecorder()))
    d = Deferred.fromCoroutine(manager.shutdown_all())
    gateway.answer_all()
    result_of(d)
    assert gateway.alive == []


def test_the_pool_stays_within_the_servers_kernel_limit(gateway: FakeGateway) -> None:
    manager = gateway.manager(prestart=1, max_kernels=2)
    manager.start_warm_pool()
    gateway.answer_all()
    for room in ("a", "b"):
        result_of(manager.execute(room, "1", WaitRecorder()))
        gateway.answer_all()
    assert len(gateway.alive) == 2 and manager.pool.ready == 0
    with pytest.raises(KernelLimitReached):
        result_of(manager.execute("c", "1", WaitRecorder()))


def test_run_results_are_those_of_the_kernel(gateway: FakeGateway) -> None:
    manager = gateway.manager()
    run = manager.execute("room", "1", WaitRecorder())
    gateway.answer_all()
    assert result_of(run) == ExecutionResult("ok", 1, 0.0)


# Configuration.


def test_the_crowd_settings_are_read_and_checked() -> None:
    config = parse_config("gateway:\n  start_concurrency: 4\n  prestart: 0\n", environ={})
    assert (config.gateway.start_concurrency, config.gateway.prestart) == (4, 0)
    defaults = parse_config("", environ={}).gateway
    assert (defaults.start_concurrency, defaults.prestart) == (0, 1)
    with pytest.raises(ConfigError) as refused:
        parse_config("gateway:\n  start_concurrency: -1\n  prestart: many\n", environ={})
    [concurrency, prestart] = refused.value.errors
    assert concurrency.startswith("gateway.start_concurrency:")
    assert prestart.startswith("gateway.prestart:")


def test_start_concurrency_zero_means_one_per_core_and_at_least_two(
    gateway: FakeGateway,
) -> None:
    assert gateway.manager(start_concurrency=0).starts.concurrency == machine_start_concurrency()
    assert machine_start_concurrency() >= 2
    assert gateway.manager(start_concurrency=5).starts.concurrency == 5
