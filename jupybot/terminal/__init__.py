"""The terminal part (not built yet)."""

from __future__ import annotations

from ..parts import PartContext


def build_terminal(context: PartContext) -> None:
    context.top.add_disabled("terminal", "not built yet")
