"""The contact part (not built yet)."""

from __future__ import annotations

from ..parts import PartContext


def build_contact(context: PartContext) -> None:
    context.top.add_disabled("contact", "not built yet")
