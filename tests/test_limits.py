"""The one per-key limiter (jupybot/limits.py), on task.Clock: what a sender is allowed, when
they may act again, and that a crowd of keys cannot grow its memory without end."""

from __future__ import annotations

from twisted.internet.task import Clock

from jupybot.limits import KeyedLimiter, SlidingWindow, TokenBucket


def test_window_allows_limit_per_window_per_key_and_says_when() -> None:
    clock = Clock()
    limiter = KeyedLimiter(clock, SlidingWindow(limit=3, window=60))
    assert limiter.take("a") is None
    clock.advance(30)
    assert limiter.take("a") is None and limiter.take("a") is None
    clock.advance(10)
    assert limiter.take("a") == 20.0  # the first of the three leaves the window then
    assert limiter.take("b") is None  # each key has its own
    clock.advance(20)
    assert limiter.take("a") is None
    assert limiter.take("a") == 30.0  # the two at 30 s still count until 90 s


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = KeyedLimiter(clock, TokenBucket(per_second=0.5, burst=2))
    assert limiter.take("p") is None and limiter.take("p") is None
    assert limiter.take("p") == 2.0
    clock.advance(2)
    assert limiter.take("p") is None
    assert limiter.take("p") == 2.0


def test_memory_is_bounded_by_forgetting_whole_budgets() -> None:
    clock = Clock()
    limiter = KeyedLimiter(clock, SlidingWindow(limit=1, window=10), max_tracked=100)
    for n in range(100):
        limiter.take(f"old{n}")
    clock.advance(10)
    for n in range(1000):
        limiter.take(f"new{n}")
        assert len(limiter) <= 101 + n
    clock.advance(10)
    limiter.take("last")
    assert len(limiter) <= 101
    # A key still inside its window is never forgotten: forgetting it would let it through.
    busy = KeyedLimiter(clock, SlidingWindow(limit=1, window=10), max_tracked=5)
    busy.take("mallory")
    for n in range(50):
        busy.take(f"crowd{n}")
    assert busy.take("mallory") is not None


def test_bucket_forgets_only_full_buckets() -> None:
    clock = Clock()
    limiter = KeyedLimiter(clock, TokenBucket(per_second=1.0, burst=2), max_tracked=3)
    limiter.take("a")
    limiter.take("a")
    for n in range(10):
        limiter.take(f"k{n}")
    assert limiter.take("a") is not None  # still empty: not forgotten
    clock.advance(2)
    for n in range(10):
        limiter.take(f"j{n}")
    assert len(limiter) == 10  # the ten j, taken just now; "a" and the k, full again, forgotten
