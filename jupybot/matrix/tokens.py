"""Access tokens that expire and come back (MSC2918, in the Matrix spec since 1.3).

matrix-nio neither asks for a refresh token at login nor refreshes one, so these calls are made
here, through the nio client's own HTTP session on the shared loop. A login asks for a refresh
token (C{"refresh_token": true}); C{POST /refresh} trades it for a new access token and a new
refresh token (Synapse spends the old one once the new access token is used). A refusal comes
back as nio's C{ErrorResponse} with its transport response, so that C{MatrixApi.retrying} retries
5xx and 429 answers of these calls like any other.

L{RefreshTimer} decides when to refresh ahead of the expiry, on the injected clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse
from nio import AsyncClient, ErrorResponse, Response
from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = [
    "Grant",
    "RefreshTimer",
    "RenewingClient",
    "is_unknown_token",
    "password_login",
    "published_device_key",
    "refresh_access_token",
]

_LOGIN = "/_matrix/client/v3/login"
_REFRESH = "/_matrix/client/v3/refresh"
_KEYS_QUERY = "/_matrix/client/v3/keys/query"

# How long before its expiry a token is refreshed: a fifth of its life, at most a minute (a
# 5-minute Synapse token at 4 minutes, a 2-hour one a minute before its end).
_LEAD_FRACTION = 0.2
_MAX_LEAD_SECONDS = 60.0


@dataclass(frozen=True)
class Grant:
    """What a login or a refresh gave: the tokens, and how long the access token lives."""

    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    # Seconds from now; None for a token that does not expire.
    expires_in: float | None


class RenewingClient(AsyncClient):
    """matrix-nio's client, except that it keeps its access token when the homeserver calls it
    expired (a soft logout): jupybot renews it (login.py). nio would forget it, and every call
    made meanwhile, including those nio makes inside a send (one-time key claims while sharing
    a room key), would fail as "not logged in", leaving that room's key sharing stuck for good.
    """

    access_token: str

    async def receive_response(self, response: Response) -> None:
        token: str = self.access_token
        await super().receive_response(response)
        if isinstance(response, ErrorResponse) and response.soft_logout:
            self.access_token = token


def is_unknown_token(response: object) -> bool:
    """A 401 C{M_UNKNOWN_TOKEN}: the access token expired (C{soft_logout}) or was revoked."""
    return isinstance(response, ErrorResponse) and response.status_code == "M_UNKNOWN_TOKEN"


async def _post(
    client: AsyncClient, path: str, body: dict[str, Any], token: str | None = None
) -> tuple[ClientResponse, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response: ClientResponse = await client.send("POST", path, json.dumps(body), headers)
    try:
        # Not JSON (a proxy's error page) raises ValueError: retried as a network error.
        data = await response.json(content_type=None)
    finally:
        response.release()
    return response, data


def _refusal(response: ClientResponse, data: Any) -> ErrorResponse:
    error = ErrorResponse.from_dict(data if isinstance(data, dict) else {})
    error.transport_response = response
    return error


def _expires_in(data: dict[str, Any]) -> float | None:
    expires = data.get("expires_in_ms")
    return expires / 1000 if isinstance(expires, int) and expires > 0 else None


def _grant(data: Any, user_id: str, device_id: str | None) -> Grant:
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise ValueError(f"no access token in the homeserver's answer: {data!r:.200}")
    device = data.get("device_id", device_id)
    if not isinstance(device, str):
        raise ValueError("no device id in the homeserver's answer")
    refresh = data.get("refresh_token")
    return Grant(
        user_id=str(data.get("user_id", user_id)),
        device_id=device,
        access_token=data["access_token"],
        refresh_token=refresh if isinstance(refresh, str) else None,
        expires_in=_expires_in(data),
    )


async def password_login(
    client: AsyncClient,
    user_id: str,
    password: str,
    device_name: str,
    device_id: str | None,
    refreshable: bool = True,
) -> Grant | ErrorResponse:
    """Log in with the password, as C{device_id} (None: a new device), asking for a refresh
    token unless not C{refreshable}."""
    body: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "initial_device_display_name": device_name,
    }
    if device_id is not None:
        body["device_id"] = device_id
    if refreshable:
        body["refresh_token"] = True
    response, data = await _post(client, _LOGIN, body)
    if response.status != 200:
        return _refusal(response, data)
    return _grant(data, user_id, device_id)


async def refresh_access_token(
    client: AsyncClient, user_id: str, device_id: str, refresh_token: str
) -> Grant | ErrorResponse:
    """A new access token for C{refresh_token} (C{POST /refresh} needs no access token)."""
    response, data = await _post(client, _REFRESH, {"refresh_token": refresh_token})
    if response.status != 200:
        return _refusal(response, data)
    grant = _grant(data, user_id, device_id)
    if grant.refresh_token is None:
        # The spec lets a homeserver keep the old refresh token valid and send none.
        grant = Grant(
            grant.user_id, grant.device_id, grant.access_token, refresh_token, grant.expires_in
        )
    return grant


async def published_device_key(
    client: AsyncClient, user_id: str, device_id: str
) -> str | ErrorResponse | None:
    """The Ed25519 key the homeserver publishes for C{device_id}; None when it has none (the
    device was deleted, perhaps made again by a login, without keys)."""
    response, data = await _post(
        client, _KEYS_QUERY, {"device_keys": {user_id: [device_id]}}, client.access_token
    )
    if response.status != 200:
        return _refusal(response, data)
    device = ((data.get("device_keys") or {}).get(user_id) or {}).get(device_id) or {}
    key = (device.get("keys") or {}).get(f"ed25519:{device_id}")
    return key if isinstance(key, str) else None


class RefreshTimer:
    """Calls C{renew} a little before the access token expires, on the injected clock.

    A token that has already expired (a restart after a long stop) is renewed at once.
    """

    def __init__(self, clock: IReactorTime, renew: Callable[[], None]) -> None:
        self._clock = clock
        self._renew = renew
        self._call: IDelayedCall | None = None

    @staticmethod
    def lead(lifetime: float) -> float:
        return min(_MAX_LEAD_SECONDS, lifetime * _LEAD_FRACTION)

    @property
    def due(self) -> float | None:
        """When the next renewal is due (clock seconds), if one is scheduled."""
        return self._call.getTime() if self._call is not None else None

    def expires_in(self, lifetime: float | None) -> None:
        """The current token lives C{lifetime} more seconds (None: forever)."""
        self.cancel()
        if lifetime is None:
            return
        delay = max(0.0, lifetime - self.lead(lifetime))
        self._call = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        self._renew()

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
