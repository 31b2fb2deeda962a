"""GET /ping: how the server and each of its parts are doing, for people and for orchestrators.

The answer is 200 only while the whole server is "ok" (every enabled part runs); while it
starts, stops, or a part has failed or is down, the same JSON comes with a 503, so a proxy's or
an orchestrator's health check can act on the code alone.
"""

from __future__ import annotations

import json
from typing import Protocol

from twisted.web.resource import Resource
from twisted.web.server import Request

from .. import __version__

__all__ = ["Health", "PingResource"]


class Health(Protocol):
    """What /ping reads: the service tree (L{jupybot.service.JupybotService}) answers it."""

    def overall(self) -> str: ...

    def statuses(self) -> dict[str, str]: ...

    def details(self) -> dict[str, str]: ...


class PingResource(Resource):
    """GET /ping: the overall status, the version and reactor, and each part's status."""

    isLeaf = True

    def __init__(self, reactor_name: str, health: Health) -> None:
        super().__init__()
        self._reactor_name = reactor_name
        self._health = health

    def render_GET(self, request: Request) -> bytes:
        overall = self._health.overall()
        request.setResponseCode(200 if overall == "ok" else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {
            "status": overall,
            "version": __version__,
            "reactor": self._reactor_name,
            "services": self._health.statuses(),
            "details": self._health.details(),
        }
        return json.dumps(body).encode()
