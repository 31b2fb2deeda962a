"""Access control: deny by default, user ids and *:server patterns, admin-only commands."""

from __future__ import annotations

from twisted.internet.task import Clock

from jupybot.commands import AccessPolicy, RefusalLimiter, matches


def test_patterns() -> None:
    assert matches("@alice:example.org", "@alice:example.org")
    assert not matches("@alice:example.org", "@Alice:example.org")
    assert matches("@alice:example.org", "*:example.org")
    assert matches("@bob:Example.ORG", "*:example.org")
    assert not matches("@alice:evil.example.org", "*:example.org")
    assert not matches("@alice:example.org.evil", "*:example.org")
    assert matches("@alice:example.org:8448", "*:example.org:8448")
    assert matches("1234", "*")
    assert not matches("1234", "*:example.org")


def test_deny_by_default() -> None:
    policy = AccessPolicy.build([], [], [])
    assert policy.refusal("@alice:example.org", "run", direct=True) == (
        "Sorry, @alice:example.org is not allowed to use this bot."
    )


def test_admin_only_commands_in_shared_rooms() -> None:
    policy = AccessPolicy.build(["*:example.org"], ["@root:example.org"], ["stop", "restart"])
    assert policy.refusal("@alice:example.org", "run", direct=False) is None
    assert policy.refusal("@alice:example.org", "stop", direct=False) == (
        "Sorry, only admins may use 'stop' in a shared room."
    )
    assert policy.refusal("@alice:example.org", "stop", direct=True) is None
    assert policy.refusal("@root:example.org", "stop", direct=False) is None
    assert policy.refusal("@mallory:evil.org", "help", direct=False) is not None
    # Admins need not be listed twice.
    assert AccessPolicy.build([], ["@root:example.org"], []).is_allowed("@root:example.org")


def test_refusals_are_rate_limited_per_user() -> None:
    clock = Clock()
    limiter = RefusalLimiter(clock, interval=60)
    assert limiter.should_tell("@mallory:evil.org")
    assert not limiter.should_tell("@mallory:evil.org")
    assert limiter.should_tell("@eve:evil.org")
    clock.advance(59)
    assert not limiter.should_tell("@mallory:evil.org")
    clock.advance(1)
    assert limiter.should_tell("@mallory:evil.org")
