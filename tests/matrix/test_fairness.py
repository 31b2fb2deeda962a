"""The order of sends waiting for the account's rate limit: rooms in turn, answers first."""

from __future__ import annotations

from jupybot.matrix.fairness import FairShare


def _drain(share: FairShare[str]) -> list[str]:
    taken = []
    while (item := share.take()) is not None:
        taken.append(item)
    return taken


def test_a_flooding_room_delays_another_by_one_turn_not_its_backlog() -> None:
    share: FairShare[str] = FairShare()
    for n in range(5):
        share.add("!flood", f"flood{n}", edit=False)
    assert share.take() == "flood0"
    # The quiet room had nothing waiting: it goes before the flooded room's backlog.
    share.add("!quiet", "answer", edit=False)
    share.add("!quiet", "more", edit=False)
    assert _drain(share)[:4] == ["answer", "flood1", "more", "flood2"]
    assert len(share) == 0


def test_in_a_room_new_events_go_before_edits_each_in_order() -> None:
    share: FairShare[str] = FairShare()
    share.add("!room", "edit1", edit=True)
    share.add("!room", "answer1", edit=False)
    share.add("!room", "edit2", edit=True)
    share.add("!room", "answer2", edit=False)
    assert _drain(share) == ["answer1", "answer2", "edit1", "edit2"]


def test_a_send_refused_in_its_turn_goes_first_and_a_given_up_one_leaves() -> None:
    share: FairShare[str] = FairShare()
    share.add("!a", "a1", edit=False)
    share.add("!a", "a2", edit=False)
    share.add("!b", "b1", edit=False)
    share.add("!c", "c1", edit=False)
    assert share.take() == "a1"
    assert share.take() == "b1"
    # b1 met a 429: the slot it was refused is its own, before c's turn and a's.
    share.add("!b", "b1", edit=False, again=True)
    share.remove("!c", "c1")
    assert _drain(share) == ["b1", "a2"]
