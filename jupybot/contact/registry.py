"""Where chat adapters offer the contact outbox a way to reach the owner.

The outbox (core) never imports an adapter: the Discord or Matrix part registers a
L{DeliveryChannel} here when it is built, and the outbox looks channels up by name.
"""

from __future__ import annotations

from collections.abc import Iterator

from .api import DeliveryChannel


class ChannelRegistry:
    """The delivery channels of one server, by name, in registration order."""

    def __init__(self) -> None:
        self._channels: dict[str, DeliveryChannel] = {}

    def register(self, channel: DeliveryChannel) -> None:
        if channel.name in self._channels:
            raise ValueError(f"a delivery channel named {channel.name!r} is already registered")
        self._channels[channel.name] = channel

    def get(self, name: str) -> DeliveryChannel | None:
        return self._channels.get(name)

    def __iter__(self) -> Iterator[DeliveryChannel]:
        return iter(list(self._channels.values()))

    def __len__(self) -> int:
        return len(self._channels)
