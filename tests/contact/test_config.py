"""`contact.retry_max_seconds` and `contact.degraded_after_seconds`: typed, bounded, and what
the outbox and /ping are built with."""

from __future__ import annotations

import pytest

from jupybot.config import ConfigError, parse_config
from jupybot.contact.outbox import retry_policy


def test_defaults_retry_up_to_five_minutes_and_degrade_after_half_an_hour() -> None:
    contact = parse_config("", environ={}).contact
    assert contact.retry_max_seconds == 300 and contact.degraded_after_seconds == 1800
    delays = [retry_policy(contact.retry_max_seconds)(attempt) for attempt in range(10)]
    assert delays == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_a_small_maximum_caps_the_backoff() -> None:
    contact = parse_config("contact:\n  retry_max_seconds: 5\n", environ={}).contact
    assert [retry_policy(contact.retry_max_seconds)(n) for n in range(4)] == [2, 4, 5, 5]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("retry_max_seconds: 1", "contact.retry_max_seconds: expected at least 2, got 1"),
        ("retry_max_seconds: soon", "contact.retry_max_seconds: expected a number"),
        ("degraded_after_seconds: -1", "contact.degraded_after_seconds: expected at least 0"),
        ("degraded_after_seconds: 1000000", "contact.degraded_after_seconds: expected at most"),
    ],
)
def test_mistakes_are_named_with_their_key(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(f"contact:\n  {text}\n", environ={})
    assert any(e.startswith(error) for e in raised.value.errors), raised.value.errors
