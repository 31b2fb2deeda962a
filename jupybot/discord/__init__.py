"""The discord part (not built yet)."""

from __future__ import annotations

from ..parts import PartContext


def build_discord(context: PartContext) -> None:
    context.top.add_disabled("discord", "not built yet")
