"""The kernels part (not built yet)."""

from __future__ import annotations

from ..parts import PartContext


def build_kernels(context: PartContext) -> None:
    context.top.add_disabled("kernels", "not built yet")
