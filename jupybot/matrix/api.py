"""The Matrix bot's calls to its homeserver, each retried the way a long-running bot must.

matrix-nio's own retry loops are turned off (they sleep on asyncio's clock, unseen by tests);
here every call is retried on network errors and 5xx answers with Twisted's C{backoffPolicy}
(counted by the project's one L{jupybot.retry.Backoff}; not L{jupybot.retry.retrying}, whose
every retry is a failure: here a 429 or a renewed token is none),
and after a 429 for exactly the C{retry_after_ms} the server asked for, on the injected clock.
Sends carry their own transaction id, so a retried send is never posted twice.

Homeservers limit how fast one account sends (Synapse's default C{rc_message}: 0.2 events a
second after a burst of 10, per account, whatever the room). A 429 is not a failure: it is
waited out however often it comes, and every send of the account waits with it instead of
collecting 429s of its own. Edits of one event go out one at a time, in order, and an edit
still waiting when a newer edit of the same event arrives is replaced by it: the newer one
carries everything, so a reply's last edit costs one slot of the limit, not a queue of them.
While the account is held back, rooms share the sends it has in turn (L{SendTurns}).
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
from nio import (
    AsyncClient,
    ErrorResponse,
    LocalProtocolError,
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
from ..retry import Backoff
from .fairness import Pace, SendTurns
from .tokens import is_unknown_token

__all__ = [
    "MatrixApi",
    "MatrixError",
    "TokenRenewal",
    "is_rate_limited",
    "is_transient",
    "replaced_event",
]

R = TypeVar("R")

# Network trouble worth retrying: refused or dropped connections (a homeserver restarting),
# timeouts, and bodies that are not JSON (a proxy's error page).
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError)


class MatrixError(Exception):
    """The homeserver refused a request for good (not worth retrying)."""


class TokenRenewal(Protocol):
    """Who gets the client a working access token again when the homeserver refuses one
    (C{M_UNKNOWN_TOKEN}): L{jupybot.matrix.login.MatrixLogin}."""

    # Bumped by each new access token: a call refused with an older one is simply tried again.
    generation: int

    async def renew(self, seen: int) -> None:
        """Fires once the client holds a token newer than generation C{seen}."""


def is_rate_limited(response: object) -> bool:
    """A 429 (M_LIMIT_EXCEEDED): the homeserver asks this account to send more slowly."""
    if not isinstance(response, ErrorResponse):
        return False
    transport = getattr(response, "transport_response", None)
    return response.status_code == "M_LIMIT_EXCEEDED" or getattr(transport, "status", None) == 429


def is_transient(response: object) -> float | None:
    """For an error response worth retrying: the delay the server asked for (0 if none).

    None for a success or a permanent error.
    """
    if not isinstance(response, ErrorResponse):
        return None
    if is_rate_limited(response):
        return (response.retry_after_ms or 0) / 1000
    status = getattr(getattr(response, "transport_response", None), "status", None)
    if isinstance(status, int) and status >= 500:
        return 0.0
    return None


Version = tuple[dict[str, Any], str]  # an event's content and the transaction id it is sent with


@dataclass
class _EditLane:
    """The edits of one event not accepted yet: the newest one waiting, and who waits for it."""

    waiting: Version | None
    callers: list[asyncio.Future[str]] = field(default_factory=list)


def replaced_event(event_type: str, content: dict[str, Any]) -> str | None:
    """The id of the event C{content} replaces, when it is an edit (C{m.replace})."""
    relation = content.get("m.relates_to")
    if event_type != "m.room.message" or not isinstance(relation, dict):
        return None
    if relation.get("rel_type") != "m.replace":
        return None
    event_id = relation.get("event_id")
    return event_id if isinstance(event_id, str) else None


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
        # 429s seen: how often the homeserver said "slower" (for the logs and bench/matrix.py).
        self.rate_limited = 0
        self._turns = SendTurns(clock, self.sleep)
        self._edit_lanes: dict[tuple[str, str], _EditLane] = {}
        self._drivers: set[asyncio.Future[None]] = set()
        # Set by the login keeper: a refused token is renewed and the call tried again.
        self.renewal: TokenRenewal | None = None

    async def sleep(self, seconds: float) -> None:
        await await_deferred(deferLater(self.clock, seconds, lambda: None))

    async def _call_in_turn(
        self, call: Callable[[], Awaitable[R]], pace: Pace | None, again: bool
    ) -> R:
        """C{call()}, in its turn among the sends while the account is held back."""
        if pace is None:
            return await call()
        async with self._turns.turn(pace, again):
            response = await call()
            if is_rate_limited(response):
                # Held before the turn passes on: the next send waits out this 429.
                self._turns.hold(is_transient(response) or self._policy(0))
            return response

    async def retrying(
        self,
        what: str,
        call: Callable[[], Awaitable[R]],
        forever: bool = False,
        paced: Pace | None = None,
        renew: bool = True,
        accept: Callable[[R], bool] | None = None,
    ) -> R:
        """C{call()}'s response once it is not a transient failure.

        Gives up after C{max_attempts} failures (raising L{MatrixError}) unless C{forever}; a
        429 is no failure and is waited out however often it comes. A C{paced} call (a send)
        also waits while an earlier 429 of any send holds the account back, then takes its turn
        among the rooms' sends. A refused access
        token (expired or revoked) is renewed, then the call is made again, unless not C{renew}
        (the renewal's own calls). A response C{accept} refuses is retried like a 5xx.
        """
        failures = Backoff(self._policy)
        held = Backoff(self._policy)  # 429s in a row: no failure, never given up on
        renewal = self.renewal if renew else None
        while True:
            seen = renewal.generation if renewal is not None else 0
            try:
                response = await self._call_in_turn(call, paced, again=held.failures > 0)
            except LocalProtocolError as e:
                # nio refuses the call itself, e.g. a key query retried after a refused token
                # whose users nio had already taken off its list: nothing left to do.
                raise MatrixError(f"{what}: {e}") from e
            except _NETWORK_ERRORS as e:
                asked = 0.0
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if renewal is not None and is_unknown_token(response):
                    await renewal.renew(seen)
                    continue
                transient = is_transient(response)
                if transient is None and (accept is None or accept(response)):
                    return response
                asked = transient or 0.0
                if is_rate_limited(response):
                    delay = held.failed()
                    await self._limited(what, asked or delay, paced is not None)
                    continue
                problem = str(response)
            delay = failures.failed()
            if asked > 0:
                delay = asked
            if not forever and failures.failures >= self._max_attempts:
                raise MatrixError(f"{what} failed after {failures.failures} attempts: {problem}")
            self.log.warn(
                "matrix: {what} failed ({problem}); retrying in {delay:.1f}s",
                what=what,
                problem=problem,
                delay=delay,
            )
            await self.sleep(delay)

    async def _limited(self, what: str, delay: float, paced: bool) -> None:
        self.rate_limited += 1
        self.log.info(
            "matrix: rate limited while {what}; waiting {delay:.1f}s as the homeserver asks",
            what=what,
            delay=delay,
        )
        if paced:
            self._turns.hold(delay)
        else:
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
        C{transaction} (of this device), however often it is sent.

        An edit may be replaced, while it waits for the rate limit, by a newer edit of the same
        event; it then fires with the newer one's event id, once that one is posted.
        """
        version = (content, transaction or str(uuid.uuid4()))
        target = replaced_event(event_type, content)
        if target is None:
            return await self._post(room_id, event_type, lambda: version)
        return await self._edit(room_id, target, version)

    async def _post(
        self, room_id: str, event_type: str, newest: Callable[[], Version], edit: bool = False
    ) -> str:
        """Send C{newest()}, asked again before each attempt (an edit's may have changed)."""

        async def attempt() -> Any:
            content, transaction = newest()
            return await self.client.room_send(
                room_id, event_type, content, tx_id=transaction, ignore_unverified_devices=True
            )

        response = await self.retrying(
            f"sending {event_type} to {room_id}", attempt, paced=Pace(room_id, edit)
        )
        if isinstance(response, ErrorResponse):
            raise MatrixError(f"sending to {room_id} refused: {response}")
        event_id: str = response.event_id
        return event_id

    async def _edit(self, room_id: str, target: str, version: Version) -> str:
        mine: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        key = (room_id, target)
        lane = self._edit_lanes.get(key)
        if lane is not None:
            # An earlier edit of this event is on its way: this one goes next, in its place
            # if that one is still waiting.
            lane.waiting = version
            lane.callers.append(mine)
        else:
            lane = self._edit_lanes[key] = _EditLane(version, [mine])
            # Its own task: the caller whose edit landed goes on while newer ones are sent.
            driver = asyncio.ensure_future(self._drive(key, lane))
            self._drivers.add(driver)
            driver.add_done_callback(self._drivers.discard)
        return await asyncio.shield(mine)

    async def _drive(self, key: tuple[str, str], lane: _EditLane) -> None:
        """Send the lane's edits until none waits, each attempt with the newest one."""
        try:
            while lane.waiting is not None:
                try:
                    await self._send_newest(key[0], lane)
                except Exception:
                    continue  # its callers have the error; newer edits may still go through
        finally:
            # No await between the last look at the lane and this: no edit is left behind.
            del self._edit_lanes[key]

    async def _send_newest(self, room_id: str, lane: _EditLane) -> None:
        current = lane.waiting
        answered: list[asyncio.Future[str]] = []

        def newest() -> Version:
            nonlocal current
            if lane.waiting is not None:
                current, lane.waiting = lane.waiting, None
                answered.extend(lane.callers)
                lane.callers.clear()
            assert current is not None
            return current

        try:
            event_id = await self._post(room_id, "m.room.message", newest, edit=True)
        except (Exception, asyncio.CancelledError) as e:
            for caller in answered:  # the callers of newer edits wait for their own attempt
                if caller.done():
                    continue
                if isinstance(e, asyncio.CancelledError):
                    caller.cancel()
                else:
                    caller.set_exception(e)
            raise
        for caller in answered:
            if not caller.done():
                caller.set_result(event_id)

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
