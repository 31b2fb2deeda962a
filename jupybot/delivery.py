"""The contact outbox's delivery channels, by name: knowledge of the composition root.

The contact core never names a chat adapter. The root knows which adapters offer a channel
(each in its delivery.py); `contact.deliver_to` is checked against this list, and app.py picks
the channels used when it is not set.
"""

from __future__ import annotations

__all__ = ["KNOWN_CHANNELS"]

# The contact part's own "file", and one per chat adapter.
KNOWN_CHANNELS = ("discord", "matrix", "file")
