"""The notices about messages the bot could not decrypt, on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from jupybot.matrix.undecryptable import UndecryptableNotices, Withheld


def test_a_withheld_key_is_explained_with_its_code_and_what_to_do() -> None:
    notices = UndecryptableNotices(Clock())
    withheld = Withheld.from_content(
        {
            "room_id": "!r:x",
            "session_id": "s1",
            "code": "m.unverified",
            "reason": "The sender has disabled encrypting to unverified devices.",
        }
    )
    assert withheld is not None
    notices.withheld(withheld)
    text = notices.failed("!r:x", "@alice:x", "s1")
    assert text is not None
    assert "@alice:x" in text
    assert "this room's key was withheld from me (m.unverified: The sender has" in text
    assert "matrix.cross_signing" in text


def test_a_missing_key_says_it_was_asked_for() -> None:
    text = UndecryptableNotices(Clock()).failed("!r:x", "@alice:x", "unknown")
    assert text is not None
    assert "has not reached my device (I asked for it)" in text


def test_at_most_one_notice_a_minute_per_room() -> None:
    clock = Clock()
    notices = UndecryptableNotices(clock)
    assert notices.failed("!a:x", "@alice:x", "s") is not None
    assert notices.failed("!a:x", "@alice:x", "s") is None
    assert notices.failed("!b:x", "@alice:x", "s") is not None
    clock.advance(59)
    assert notices.failed("!a:x", "@alice:x", "s") is None
    clock.advance(1)
    assert notices.failed("!a:x", "@alice:x", "s") is not None


def test_a_withheld_event_without_a_code_is_ignored() -> None:
    assert Withheld.from_content({"session_id": "s"}) is None
