"""The settings every chat section has (`matrix:`, `discord:`): how often a reply is edited, and
how a busy room is kept in order (docs/commands.md, "Busy rooms"). Declared and read here once;
the command layer takes them as they are (`jupybot/commands/assembly.py`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ._reader import Reader

__all__ = ["ChatSettings"]


@dataclass(frozen=True, kw_only=True)
class ChatSettings:
    """The chat sections' shared keys. A section class inherits them (keyword-only, so they
    follow its own fields) and reads them with L{read_chat}, in its own section: the keys and
    their error paths (`matrix.command_burst`) stay where people wrote them."""

    # A reply in progress is edited at most this often.
    edit_interval_seconds: float = 1.0
    # Each person may send `command_burst` commands at once, then one every
    # 60 / `commands_per_minute` seconds; 0 turns the limit off.
    commands_per_minute: float = 20.0
    command_burst: int = 8
    # Editing a command (or reacting 🔁 to its reply) re-runs it for this long after it ran.
    rerun_window_seconds: float = 600.0

    @staticmethod
    def read_chat(r: Reader) -> dict[str, Any]:
        """The shared keys of section C{r}, as keyword arguments of the section's class."""
        d = ChatSettings()
        settings = ChatSettings(
            edit_interval_seconds=r.number(
                "edit_interval_seconds", d.edit_interval_seconds, minimum=0.2, maximum=60
            ),
            commands_per_minute=r.number(
                "commands_per_minute", d.commands_per_minute, minimum=0, maximum=600
            ),
            command_burst=r.integer("command_burst", d.command_burst, minimum=1, maximum=100),
            rerun_window_seconds=r.number(
                "rerun_window_seconds", d.rerun_window_seconds, minimum=0, maximum=86400
            ),
        )
        return settings.chat_fields()

    def chat_fields(self) -> dict[str, Any]:
        """This object's shared keys only (a section's own fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(ChatSettings)}
