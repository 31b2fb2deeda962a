"""How often a streamed reply may be edited: a burst, then what a homeserver sustains.

A chat network limits how fast a bot may send, and an edit is a send: Synapse's default
C{rc_message} (matrix.org's is similar) is 0.2 events a second after a burst of 10, per
account, so an edit a second meets its 429 after about ten edits, and the final edit then
waits up to 5 s for a slot. So a reply is edited every C{interval} for its first
C{QUICK_SENDS} sends, then at most every C{SUSTAINED_SPACING_SECONDS} (the default limit's
pace): one long run leaves half the burst for its final edit, its reaction and other rooms.
Where the network pushes back anyway (a stricter homeserver, many rooms at once), the adapters
wait out the C{retry_after} it asks for, so the command layer sees an edit that took long to
land. After such an edit the next one waits twice that long, and the spacing relaxes by a
tenth with each edit that lands promptly: the bucket refills while output streams.
"""

from __future__ import annotations

__all__ = ["EditPacer"]

# An edit a minute at the slowest: a reply still shows a long run is alive.
MAX_SPACING_SECONDS = 60.0
# The reply and its first edits, at the interval asked for.
QUICK_SENDS = 5
SUSTAINED_SPACING_SECONDS = 5.0
# What an edit that landed promptly takes off the spacing.
_RELAX = 0.9


class EditPacer:
    """The spacing between two edits of one reply, fed how long each send took to land."""

    def __init__(
        self,
        interval: float,
        sustained: float = SUSTAINED_SPACING_SECONDS,
        ceiling: float = MAX_SPACING_SECONDS,
    ) -> None:
        self.interval = interval
        self.sustained = max(sustained, interval)
        self.ceiling = max(ceiling, self.sustained)
        self.spacing = interval
        self._landed = 0

    @property
    def floor(self) -> float:
        """The spacing when the network does not push back."""
        return self.interval if self._landed < QUICK_SENDS else self.sustained

    def landed(self, took: float) -> None:
        """A send of this reply landed C{took} seconds after it was made."""
        self._landed += 1
        if took > self.interval:
            # Held back by the network: leave it twice the room it needed.
            self.spacing = min(self.ceiling, max(2 * took, 2 * self.spacing))
        else:
            self.spacing = max(self.floor, self.spacing * _RELAX)
