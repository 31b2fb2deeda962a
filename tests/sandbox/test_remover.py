"""Ended sandboxes' cgroups are removed off the reactor: a busy one is retried, what still runs
in it is killed, and one that never empties is given up on (its uid then stays leased)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock

from jupybot.sandbox.cgroups import SessionCgroup
from jupybot.sandbox.remover import (
    REMOVE_TRIES,
    RETRY_INTERVAL,
    TRIES_AFTER_THE_LAST_KILL,
    CgroupRemover,
)


class Threads:
    """A thread per job; what a job hands back is run by the test's own thread when it arrives."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., Any], tuple[object, ...]]] = queue.Queue()

    def callInThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        threading.Thread(target=callable, args=args, kwargs=kwargs).start()

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        self.calls.put((callable, args))

    def run_next(self) -> None:
        callable, args = self.calls.get(timeout=10)
        callable(*args)


class BusyGroup(SessionCgroup):
    """A group whose processes leave after C{busy_for} attempts (never, with None)."""

    def __init__(self, busy_for: int | None) -> None:
        super().__init__([])
        self.busy_for = busy_for
        self.attempts: list[str] = []

    def _gone(self, how: str) -> bool:
        self.attempts.append(how)
        return self.busy_for is not None and len(self.attempts) > self.busy_for

    def kill_all(self) -> bool:
        return self._gone("kill")

    def remove(self, quiet: bool = False) -> bool:
        assert quiet  # the remover's thread never logs
        return self._gone("remove")


def test_groups_handed_in_together_are_removed_in_one_batch() -> None:
    clock, threads = Clock(), Threads()
    remover = CgroupRemover(clock, threads)
    groups = [BusyGroup(0), BusyGroup(0)]
    outcomes: list[bool] = []
    remover.remove(groups[0]).addCallback(outcomes.append)
    idle: list[None] = []
    remover.idle().addCallback(idle.append)
    remover.remove(groups[1]).addCallback(outcomes.append)  # while the first is removed
    threads.run_next()
    assert outcomes == [True] and idle == []
    threads.run_next()
    assert outcomes == [True, True] and idle == [None]
    assert [g.attempts for g in groups] == [["kill"], ["kill"]]
    assert remover.idle().called


def test_a_busy_group_is_killed_at_each_try_then_given_time_before_it_is_given_up() -> None:
    clock, threads = Clock(), Threads()
    remover = CgroupRemover(clock, threads)
    leaving, stuck = BusyGroup(3), BusyGroup(None)
    outcomes: dict[str, bool] = {}
    remover.remove(leaving).addCallback(lambda gone: outcomes.setdefault("leaving", gone))
    remover.remove(stuck).addCallback(lambda gone: outcomes.setdefault("stuck", gone))
    threads.run_next()  # the first, alone; the second was handed in while it was removed
    threads.run_next()
    for _ in range(REMOVE_TRIES - 1):  # both retried together
        assert threads.calls.empty()
        clock.advance(RETRY_INTERVAL)
        threads.run_next()
    assert outcomes == {"leaving": True, "stuck": False}
    assert leaving.attempts == ["kill"] * 4
    # What still runs (a process that forked past a kill) is killed again at each try; the
    # last tries give the last kill time to take before the group is given up on.
    kills = REMOVE_TRIES - TRIES_AFTER_THE_LAST_KILL
    assert stuck.attempts == ["kill"] * kills + ["remove"] * TRIES_AFTER_THE_LAST_KILL
    assert remover.idle().called and not clock.getDelayedCalls()
