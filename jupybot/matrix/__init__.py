"""The Matrix part: a Matrix bot (matrix-nio) over the chat command layer. See docs/matrix.md."""

from __future__ import annotations

from .delivery import MatrixContactRoom
from .part import MatrixPart, build_matrix

__all__ = ["MatrixContactRoom", "MatrixPart", "build_matrix"]
