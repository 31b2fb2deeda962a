"""What every part is built with: the composition root (L{jupybot.app}) hands each part builder
one L{PartContext}, and whatever else that part uses (the service tree, the site's root, the
kernel manager, the contact channel registry) as arguments of its own."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .reactor import Reactor
from .state import StateDirectory

__all__ = ["PartContext"]


@dataclass(frozen=True)
class PartContext:
    config: Config
    reactor: Reactor
    state: StateDirectory
