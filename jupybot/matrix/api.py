"""The Matrix bot's calls to its homeserver, each retried the way a long-running bot must.

matrix-nio's own retry loops are turned off (they sleep on asyncio's clock, unseen by tests);
here every call is retried on network errors and 5xx answers with Twisted's C{backoffPolicy},
and after a 429 for exactly the C{retry_after_ms} the server asked for, on the injected clock.
Sends carry their own transaction id, so a retried send is never posted twice.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from nio import (
    AsyncClient,
    ErrorResponse,
    RoomPreset,
    SyncResponse,
    UploadError,
    UploadResponse,
)
from twisted.application.internet import backoffPolicy
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..aio import await_deferred

__all__ = ["MatrixApi", "MatrixError", "is_transient"]

R = TypeVar("R")

# Network trouble worth retrying: refused or dropped connections (a homeserver restarting),
# timeouts, and bodies that are not JSON (a proxy's error page).
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError)


class MatrixError(Exception):
    """The homeserver refused a request for good (not worth retrying)."""


def is_transient(response: object) -> float | None:
    """For an error response worth retrying: the delay the server asked for (0 if none).

    None for a success or a permanent error.
    """
    if not isinstance(response, ErrorResponse):
        return None
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    if response.status_code == "M_LIMIT_EXCEEDED" or status == 429:
        return (response.retry_after_ms or 0) / 1000
    if isinstance(status, int) and status >= 500:
        return 0.0
    return None


class MatrixApi:
    """Retrying wrappers around the AsyncClient calls the bot makes."""

    log = Logger()

    def __init__(
        self,
        client: AsyncClient,
        clock: IReactorTime,
        policy: Callable[[int], float] | None = None,
        max_attempts: int = 8,
    ) -> None:
        self.client = client
        self.clock = clock
        self._policy = policy or backoffPolicy(initialDelay=0.5, maxDelay=30.0)
        self._max_attempts = max_attempts

    async def sleep(self, seconds: float) -> None:
        await await_deferred(deferLater(self.clock, seconds, lambda: None))

    async def retrying(
        self, what: str, call: Callable[[], Awaitable[R]], forever: bool = False
    ) -> R:
        """C{call()}'s response once it is not a transient failure.

        Gives up after C{max_attempts} (raising L{MatrixError}) unless C{forever}.
        """
        attempt = 0
        while True:
            try:
                response = await call()
            except _NETWORK_ERRORS as e:
                delay = self._policy(attempt)
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                asked = is_transient(response)
                if asked is None:
                    return response
                delay = asked if asked > 0 else self._policy(attempt)
                problem = str(response)
            attempt += 1
            if not forever and attempt >= self._max_attempts:
                raise MatrixError(f"{what} failed after {attempt} attempts: {problem}")
            self.log.warn(
                "matrix: {what} failed ({problem}); retrying in {delay:.1f}s",
                what=what,
                problem=problem,
                delay=delay,
            )
            await self.sleep(delay)

    # -- calls --------------------------------------------------------------------------------

    async def sync(
        self,
        since: str | None,
        timeout_ms: int,
        sync_filter: dict[str, Any] | None,
        full_state: bool = False,
    ) -> SyncResponse:
        response = await self.retrying(
            "sync",
            lambda: self.client.sync(
                timeout=timeout_ms, since=since, sync_filter=sync_filter, full_state=full_state
            ),
            forever=True,
        )
        if isinstance(response, ErrorResponse):
            raise MatrixError(f"sync refused: {response}")
        assert isinstance(response, SyncResponse)
        return response

    async def send(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        transaction: str | None = None,
    ) -> str:
        """Post an event; fires with its event id. The homeserver posts an event once per
        C{transaction} (of this device), however often it is sent."""
        transaction = transaction or str(uuid.uuid4())
        response = await self.retrying(
            f"sending {event_type} to {room_id}",
            lambda: self.client.room_send(
                room_id, event_type, content, tx_id=transaction, ignore_unverified_devices=True
            ),
        )
        if isinstance(response, ErrorResponse):
            raise MatrixError(f"sending to {room_id} refused: {response}")
        event_id: str = response.event_id
        return event_id

    async def upload(
        self, data: bytes, mimetype: str, filename: str, encrypt: bool = False
    ) -> tuple[str, dict[str, Any] | None]:
        """Put C{data} in the media repository: its mxc:// URL, and its keys when encrypted."""

        keys: dict[str, Any] | None = None

        async def attempt() -> Any:
            nonlocal keys
            # nio calls the provider again for each of its own attempts; ours are one each.
            response, keys = await self.client.upload(
                lambda _limited, _timeouts: io.BytesIO(data),
                content_type=mimetype,
                filename=filename,
                encrypt=encrypt,
                filesize=len(data),
            )
            return response

        response = await self.retrying(f"uploading {filename}", attempt)
        if isinstance(response, UploadError) or not isinstance(response, UploadResponse):
            raise MatrixError(f"uploading {filename} refused: {response}")
        return response.content_uri, keys

    async def join(self, room_id: str) -> None:
        response = await self.retrying(f"joining {room_id}", lambda: self.client.join(room_id))
        if isinstance(response, ErrorResponse):
            raise MatrixError(f"joining {room_id} refused: {response}")

    async def leave(self, room_id: str) -> None:
        response = await self.retrying(
            f"leaving {room_id}", lambda: self.client.room_leave(room_id)
        )
        if isinstance(response, ErrorResponse):
            raise MatrixError(f"leaving {room_id} refused: {response}")

    async def create_direct_room(self, user_id: str, encrypted: bool) -> str:
        initial_state = (
            [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
            if encrypted
            else []
        )
        response = await self.retrying(
            f"creating a direct chat with {user_id}",
            lambda: self.client.room_create(
                is_direct=True,
                preset=RoomPreset.trusted_private_chat,
                invite=[user_id],
                initial_state=initial_state,
            ),
        )
        if isinstance(response, ErrorResponse):
            raise MatrixError(f"creating a direct chat with {user_id} refused: {response}")
        room_id: str = response.room_id
        return room_id
