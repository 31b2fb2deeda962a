"""The matrix part (not built yet)."""

from __future__ import annotations

from ..parts import PartContext


def build_matrix(context: PartContext) -> None:
    context.top.add_disabled("matrix", "not built yet")
