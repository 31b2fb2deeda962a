"""When the bot refreshes its access token: a little before it expires, on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from jupybot.matrix.tokens import RefreshTimer


def timer() -> tuple[Clock, RefreshTimer, list[float]]:
    clock = Clock()
    fired: list[float] = []
    return clock, RefreshTimer(clock, lambda: fired.append(clock.seconds())), fired


def test_a_token_is_refreshed_when_four_fifths_of_a_short_life_are_gone() -> None:
    clock, refresh, fired = timer()
    refresh.expires_in(2.0)
    clock.advance(1.59)
    assert fired == []
    clock.advance(0.01)
    assert fired == [1.6]


def test_a_long_lived_token_is_refreshed_a_minute_before_it_expires() -> None:
    clock, refresh, fired = timer()
    refresh.expires_in(7200.0)  # matrix.org-like: two hours
    assert refresh.due == 7140.0
    clock.advance(7140.0)
    assert fired == [7140.0]


def test_a_token_already_expired_is_refreshed_at_once() -> None:
    clock, refresh, fired = timer()
    refresh.expires_in(-30.0)  # a restart after a long stop
    clock.advance(0)
    assert fired == [0.0]


def test_a_new_token_replaces_the_schedule_of_the_old_one() -> None:
    clock, refresh, fired = timer()
    refresh.expires_in(10.0)
    clock.advance(5.0)
    refresh.expires_in(10.0)  # refreshed early (a refused call): the old due time goes
    clock.advance(3.0)
    assert fired == []
    clock.advance(5.0)
    assert fired == [13.0]
    assert clock.getDelayedCalls() == []


def test_a_token_that_does_not_expire_and_a_stop_leave_nothing_scheduled() -> None:
    clock, refresh, fired = timer()
    refresh.expires_in(10.0)
    refresh.expires_in(None)
    assert refresh.due is None and clock.getDelayedCalls() == []
    refresh.expires_in(10.0)
    refresh.cancel()
    clock.advance(60)
    assert fired == [] and clock.getDelayedCalls() == []
