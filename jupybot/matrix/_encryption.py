"""What an encrypting bot does after each sync besides reading commands.

Its device's keys kept published and its members' devices known (as E2EE needs), messages it
could not decrypt explained to their room (and run if their key comes later, within
C{KEY_WAIT_SECONDS}), keys other clients withheld noted with why, and in-room verification
answered. The sync reader (`bot.py`) hands it the events and calls it at the points of a sync
where each must happen.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from nio import (
    Api,
    AsyncClient,
    EncryptionError,
    MegolmEvent,
    RoomSendResponse,
    SyncResponse,
    UnknownToDeviceEvent,
)
from twisted.logger import Logger

from ..commands import Reply
from .api import MatrixApi, MatrixError
from .content import notice_content
from .crosssigning import published_master_key
from .fairness import Pace
from .undecryptable import KEY_WAIT_SECONDS, UndecryptableNotices, Withheld
from .verification import InRoomVerifier

__all__ = ["EncryptionUpkeep"]

# Undecryptable messages kept waiting for their keys, at most (the oldest are dropped).
_WAITING_FOR_KEYS = 100

# The spec's name, and the one of MSC2399 that older clients send.
_WITHHELD_TYPES = ("m.room_key.withheld", "org.matrix.room_key.withheld")

# Hands a room's events to the sync reader again (a message decrypted once its key came).
Redispatch = Callable[[str, list[Any]], None]


class EncryptionUpkeep:
    """The encrypted side of one bot's syncs; C{is_allowed} says whose messages the bot reads
    (only they hear of a message it could not decrypt, and only they may verify it)."""

    log = Logger()

    def __init__(
        self,
        client: AsyncClient,
        api: MatrixApi,
        is_allowed: Callable[[str], bool],
        redispatch: Redispatch,
    ) -> None:
        self._client = client
        self._api = api
        self._is_allowed = is_allowed
        self._redispatch = redispatch
        # Messages that could not be decrypted in this sync; those whose key may still come.
        self._undecryptable: list[tuple[str, MegolmEvent]] = []
        self._waiting_for_keys: list[tuple[str, MegolmEvent, float]] = []
        # In-room verification events of this sync, answered after it (verification.py).
        self._verification_events: list[tuple[str, dict[str, Any]]] = []

    @functools.cached_property
    def _verifier(self) -> InRoomVerifier:
        return InRoomVerifier(_VerifyingBot(self._client, self._api, self._is_allowed))

    @functools.cached_property
    def _notices(self) -> UndecryptableNotices:
        return UndecryptableNotices(self._api.clock)

    # -- events of a sync, as the reader meets them -------------------------------------------

    def cannot_decrypt(self, room_id: str, event: MegolmEvent) -> None:
        """A message of a person allowed to use the bot that could not be decrypted."""
        self._undecryptable.append((room_id, event))

    def verification_event(self, room_id: str, source: dict[str, Any]) -> None:
        self._verification_events.append((room_id, source))

    # -- before a sync's rooms ----------------------------------------------------------------

    async def maintain_keys(self) -> None:
        """Publish the device's keys and learn the room members' devices, as E2EE needs."""
        client = self._client
        try:
            if client.should_upload_keys:
                await self._api.retrying("uploading encryption keys", client.keys_upload)
            if client.should_query_keys:
                await self._api.retrying("querying encryption keys", client.keys_query)
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                await self._api.retrying(
                    "claiming encryption keys", functools.partial(client.keys_claim, users)
                )
            await self._api.retrying("sending to-device messages", client.send_to_device_messages)
        except MatrixError as e:
            self.log.warn("matrix: encryption key upkeep failed: {error}", error=str(e))

    def note_withheld_keys(self, response: SyncResponse) -> None:
        """Remember why clients withheld room keys from the bot (matrix-nio ignores these)."""
        for event in response.to_device_events:
            if isinstance(event, UnknownToDeviceEvent) and event.type in _WITHHELD_TYPES:
                withheld = Withheld.from_content(event.source.get("content") or {})
                if withheld is not None:
                    self.log.warn(
                        "matrix: {sender} withheld a room key of {room} from the bot: "
                        "{code} {reason}",
                        sender=event.sender,
                        room=withheld.room_id,
                        code=withheld.code,
                        reason=withheld.reason,
                    )
                    self._notices.withheld(withheld)

    def run_late_decrypted(self) -> None:
        """Hand on the messages whose keys came since (matrix-nio took them in with this
        sync's to-device events); forget those that waited too long."""
        if not self._waiting_for_keys:
            return
        now = self._api.clock.seconds()
        waiting, self._waiting_for_keys = self._waiting_for_keys, []
        for room_id, event, since in waiting:
            try:
                decrypted = self._client.decrypt_event(event)
            except EncryptionError:
                if now - since < KEY_WAIT_SECONDS:
                    self._waiting_for_keys.append((room_id, event, since))
                continue
            self.log.info(
                "matrix: decrypted a message from {sender} in {room} once its key came",
                sender=event.sender,
                room=room_id,
            )
            self._redispatch(room_id, [decrypted])

    # -- after a sync's rooms -----------------------------------------------------------------

    async def tell_undecryptable(self) -> None:
        """Ask for the missing keys, and tell each room why its message got no answer."""
        failures, self._undecryptable = self._undecryptable, []
        for room_id, event in failures:
            if event.session_id not in self._client.outgoing_key_requests:
                try:
                    await self._api.retrying(
                        "requesting a room key",
                        functools.partial(self._client.request_room_key, event),
                    )
                except MatrixError as e:
                    self.log.warn("matrix: could not request a room key: {error}", error=str(e))
            if not self._notices.is_withheld(event.session_id):
                self._wait_for_key(room_id, event)
            text = self._notices.failed(room_id, event.sender, event.session_id)
            if text is not None:
                await self._send_in_clear(room_id, notice_content(Reply.text(text), event.event_id))

    async def answer_verifications(self) -> None:
        events, self._verification_events = self._verification_events, []
        for room_id, source in events:
            try:
                await self._verifier.handle(room_id, source)
            except MatrixError as e:
                self.log.warn("matrix: could not answer a verification: {error}", error=str(e))

    def _wait_for_key(self, room_id: str, event: MegolmEvent) -> None:
        self._waiting_for_keys.append((room_id, event, self._api.clock.seconds()))
        del self._waiting_for_keys[:-_WAITING_FOR_KEYS]

    async def _send_in_clear(self, room_id: str, content: dict[str, Any]) -> None:
        """Post unencrypted, even in an encrypted room: a person whose client did not trust
        the bot enough to share a key will not decrypt what the bot encrypts either."""
        transaction = str(uuid.uuid4())
        client = self._client

        async def attempt() -> Any:
            method, path, data = Api.room_send(
                client.access_token, room_id, "m.room.message", content, transaction
            )
            # matrix-nio's room_send encrypts in an encrypted room: its plain request instead.
            return await client._send(RoomSendResponse, method, path, data, (room_id,))

        try:
            response = await self._api.retrying(f"telling {room_id}", attempt, paced=Pace(room_id))
        except MatrixError as e:
            self.log.warn("matrix: could not post in {room}: {error}", room=room_id, error=str(e))
            return
        if not isinstance(response, RoomSendResponse):
            self.log.warn("matrix: could not post in {room}: {error}", room=room_id, error=response)


class _VerifyingBot:
    """The bot as the verifier sees it (verification.VerificationSender)."""

    def __init__(
        self, client: AsyncClient, api: MatrixApi, is_allowed: Callable[[str], bool]
    ) -> None:
        self._client = client
        self._api = api
        self._is_allowed = is_allowed
        self.user_id: str = client.user_id
        self.device_id: str = client.device_id
        self.device_key: str = client.olm.account.identity_keys["ed25519"]

    async def master_key(self) -> str | None:
        return await published_master_key(self._client, self._api)

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        await self._api.send(room_id, event_type, content)

    def allowed(self, user_id: str) -> bool:
        return self._is_allowed(user_id)
