"""The HTTP site every HTTP-facing part hangs its resources on."""

from .site import PingResource, WebPart

__all__ = ["PingResource", "WebPart"]
