"""Routing answers to code that waits for input: the asker's next message in that conversation."""

from __future__ import annotations

from twisted.internet.defer import Deferred

__all__ = ["InputRouter"]


class InputRouter:
    """Pending input requests keyed by (conversation key, user id)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], Deferred[str]] = {}

    def expect(self, conversation: str, user_id: str) -> Deferred[str]:
        """A Deferred fired with the next message C{user_id} sends in C{conversation}.

        Cancelling it withdraws the request. A newer request from the same place replaces an
        older one, which is cancelled.
        """
        key = (conversation, user_id)
        previous = self._pending.pop(key, None)
        if previous is not None:
            previous.cancel()

        def withdrawn(d: Deferred[str]) -> None:
            if self._pending.get(key) is d:
                del self._pending[key]

        waiting: Deferred[str] = Deferred(withdrawn)
        self._pending[key] = waiting
        return waiting

    def is_waiting(self, conversation: str, user_id: str) -> bool:
        return (conversation, user_id) in self._pending

    def deliver(self, conversation: str, user_id: str, text: str) -> bool:
        """Answer the request of C{user_id} in C{conversation}; False when there is none."""
        waiting = self._pending.pop((conversation, user_id), None)
        if waiting is None:
            return False
        waiting.callback(text)
        return True
