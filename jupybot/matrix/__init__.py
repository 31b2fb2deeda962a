"""The Matrix part: a Matrix bot (matrix-nio) over the chat command layer. See docs/matrix.md."""

from __future__ import annotations

from ..kernels import KernelManager
from ..parts import PartContext
from .delivery import MatrixContactRoom
from .part import MatrixPart

__all__ = ["MatrixContactRoom", "MatrixPart", "build_matrix"]


def build_matrix(context: PartContext, kernels: KernelManager) -> None:
    reason = context.config.matrix.disabled_reason()
    if reason is not None:
        context.top.add_disabled("matrix", reason)
        return
    part = MatrixPart(context.config.matrix, kernels, context.state, context.reactor)
    if context.config.matrix.contact_room:
        context.channels.register(MatrixContactRoom(part, context.config.matrix.contact_room))
    context.top.add_part(part)
