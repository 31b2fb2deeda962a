"""What a chat part hands its L{ChatCommands}, in three groups: its network (who may use the
bot, how it is addressed, how replies look), the rules every room follows (limits, pace,
secrets) and the stores that outlive a restart.

L{build_chat_commands} (C{assembly.py}) makes all three from a chat section's config; tests
make the one they vary and leave the others to their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import Secret
from ..rendering import RenderOptions, render_outputs
from ..state import StateDirectory
from .access import AccessPolicy
from .inflight import RunningReplies
from .notebook import NotebookLimits
from .parse import Addressing
from .rooms import ChatLimits
from .streaming import RenderFunction

__all__ = ["ChatNetwork", "ChatRules", "ChatStores"]


@dataclass(frozen=True)
class ChatNetwork:
    """What one chat adapter says of its network: who may use the bot, how a message is
    addressed to it, and how replies are rendered there."""

    access: AccessPolicy
    addressing: Addressing
    render_options: RenderOptions = field(default_factory=RenderOptions)
    render: RenderFunction = render_outputs


@dataclass(frozen=True)
class ChatRules:
    """How the command layer treats every room of one chat part: a busy room's limits, what
    rooms keep for `notebook` and the files they move, how often a reply in progress is edited
    and a refusal said again, and the secrets never shown (replaced with C{[redacted]})."""

    limits: ChatLimits = field(default_factory=ChatLimits)
    notebooks: NotebookLimits = field(default_factory=NotebookLimits)
    edit_interval: float = 1.0
    refusal_interval: float = 60.0
    secrets: tuple[Secret, ...] = ()


@dataclass(frozen=True)
class ChatStores:
    """What one chat part keeps across a restart: the replies in progress (a crash's are told
    at the next start) and, with a C{notebook_folder}, each room's notebook. The defaults keep
    both in memory only."""

    running_replies: RunningReplies = field(default_factory=lambda: RunningReplies(None))
    notebook_folder: Path | None = None

    @classmethod
    def under(cls, state: StateDirectory, network: str) -> ChatStores:
        """The stores of chat network C{network} ("matrix") in C{state}, named after it."""
        return cls(
            RunningReplies(state.file(f"{network}-running.json")),
            state.file(f"{network}-notebooks"),
        )
