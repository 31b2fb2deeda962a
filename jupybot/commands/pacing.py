"""How often a streamed reply may be edited: as often as asked, until the chat network pushes back.

A chat network limits how fast a bot may send, and an edit is a send: Synapse's default
C{rc_message} is 0.2 events a second after a burst of 10, per account, so an edit a second hits
its 429 after about ten edits. The adapters wait out the C{retry_after} the network asks for,
so the command layer sees a pushed-back edit as one that took long to land. After such an edit
the next one waits twice that long, and the spacing relaxes by a tenth with each edit that lands
promptly: the limit's bucket then refills while output streams, and the final edit and the
reaction find room at once instead of queueing behind a stream of edits.
"""

from __future__ import annotations

__all__ = ["EditPacer"]

# An edit a minute at the slowest: a reply still shows a long run is alive.
MAX_SPACING_SECONDS = 60.0
# What an edit that landed promptly takes off the spacing.
_RELAX = 0.9


class EditPacer:
    """The spacing between two edits of one reply, fed how long each send took to land."""

    def __init__(self, interval: float, ceiling: float = MAX_SPACING_SECONDS) -> None:
        self.interval = interval
        self.ceiling = max(ceiling, interval)
        self.spacing = interval

    def landed(self, took: float) -> None:
        """A send of this reply landed C{took} seconds after it was made."""
        if took > self.interval:
            # Held back by the network: leave it twice the room it needed.
            self.spacing = min(self.ceiling, max(2 * took, 2 * self.spacing))
        else:
            self.spacing = max(self.interval, self.spacing * _RELAX)
