"""What every part is built with: the composition root (L{jupybot.app}) hands each part builder
one L{PartContext}, and whatever else that part uses (the service tree, the site's root, the
kernel manager, the contact channel registry) as arguments of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Config
from .state import StateDirectory

# Twisted's reactor provides many interfaces at once (IReactorTime, IReactorProcess,
# IReactorTCP...); parts take what they need from it, and tests pass fakes.
Reactor = Any


@dataclass(frozen=True)
class PartContext:
    config: Config
    reactor: Reactor
    state: StateDirectory
