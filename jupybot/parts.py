"""What a part is built with: the composition root hands every part builder one L{PartContext}."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.web.resource import Resource

from .config import Config
from .service import JupybotService
from .state import StateDirectory

if TYPE_CHECKING:
    from .contact.registry import ChannelRegistry

# Twisted's reactor provides many interfaces at once (IReactorTime, IReactorProcess,
# IReactorTCP...); parts take what they need from it, and tests pass fakes.
Reactor = Any


def _new_channel_registry() -> ChannelRegistry:
    # Imported here: the contact package imports this module to build its part.
    from .contact.registry import ChannelRegistry

    return ChannelRegistry()


@dataclass(frozen=True)
class PartContext:
    config: Config
    reactor: Reactor
    state: StateDirectory
    top: JupybotService
    web_root: Resource
    # Chat adapters register contact delivery channels here; the contact outbox reads them.
    channels: ChannelRegistry = field(default_factory=_new_channel_registry)
