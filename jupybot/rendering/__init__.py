"""Kernel outputs as chat messages: text (HTML or plain), images and attachments, safe to show.

Between the kernel core (which yields outputs) and the command layer (which posts them); knows
nothing of Matrix or Discord beyond what L{RenderOptions} says a network can show.
"""

from __future__ import annotations

from .render import Attachment, Image, Rendered, RenderOptions, render_outputs

__all__ = ["Attachment", "Image", "RenderOptions", "Rendered", "render_outputs"]
