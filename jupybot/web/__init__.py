"""The HTTP site every HTTP-facing part hangs its resources on."""

from .ping import Health, PingResource
from .site import SiteHealth, WebPart

__all__ = ["Health", "PingResource", "SiteHealth", "WebPart"]
