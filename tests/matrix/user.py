"""A person on Matrix for the tests: a real matrix-nio client that syncs in the background.

It records every timeline event it sees and lets a test wait, with a deadline, for the one it
expects (a reply of the bot, its latest edit, an invite being accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

from nio import (
    AsyncClient,
    AsyncClientConfig,
    RoomCreateResponse,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment
from twisted.internet.defer import Deferred

from jupybot.aio import deferred_from_coroutine
from tests.peers.synapse import MatrixUser, Synapse

P = ParamSpec("P")
Event = dict[str, Any]


def asyncio_test(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """Run an asyncio test coroutine on the shared loop; pytest-twisted waits on the Deferred."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> Deferred[None]:
        return deferred_from_coroutine(test(*args, **kwargs))

    return run


class UserClient:
    def __init__(self, synapse: Synapse, user: MatrixUser, store: Path | None = None) -> None:
        """With a C{store} folder the client does end-to-end encryption, like Element."""
        self.user = user
        self.client = AsyncClient(
            synapse.base_url,
            user.user_id,
            device_id=user.device_id,
            store_path=str(store) if store else "",
            config=AsyncClientConfig(encryption_enabled=store is not None, store_sync_tokens=False),
        )
        self.client.restore_login(user.user_id, user.device_id, user.access_token)
        self.encrypted = store is not None
        self.events: list[tuple[str, Event]] = []
        self.invites: list[str] = []
        self.decrypted: set[str] = set()  # ids of events that arrived encrypted
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._next_batch: str | None = None

    @property
    def user_id(self) -> str:
        return self.user.user_id

    async def start(self) -> None:
        response = await self.client.sync(timeout=0)
        assert isinstance(response, SyncResponse), response
        self._next_batch = response.next_batch
        if self.encrypted:
            await self.maintain_keys()
        self._task = asyncio.ensure_future(self._sync_forever())

    async def _sync_forever(self) -> None:
        while True:
            try:
                response = await self.client.sync(timeout=30_000, since=self._next_batch)
            except Exception:
                # The homeserver may be restarting under a test: try again shortly.
                await asyncio.sleep(0.2)
                continue
            if not isinstance(response, SyncResponse):
                await asyncio.sleep(0.2)
                continue
            self._next_batch = response.next_batch
            if self.encrypted:
                await self.maintain_keys()
            async with self._changed:
                for room_id, info in response.rooms.join.items():
                    for event in info.timeline.events:
                        self.events.append((room_id, event.source))
                        if getattr(event, "decrypted", False):
                            self.decrypted.add(event.event_id)
                self.invites.extend(response.rooms.invite)
                self._changed.notify_all()

    async def maintain_keys(self) -> None:
        client = self.client
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    # -- acting ---------------------------------------------------------------------------------

    async def create_room(
        self, invite: list[str], direct: bool = False, encrypted: bool = False
    ) -> str:
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
        response = await self.client.room_create(
            invite=invite,
            is_direct=direct,
            preset=RoomPreset.trusted_private_chat if direct else RoomPreset.private_chat,
            initial_state=initial_state,
        )
        assert isinstance(response, RoomCreateResponse), response
        room_id: str = response.room_id
        return room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.client.room_invite(room_id, user_id)

    async def join(self, room_id: str) -> None:
        await self.client.join(room_id)

    async def send(self, room_id: str, body: str, reply_to: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(response, RoomSendResponse), response
        event_id: str = response.event_id
        return event_id

    async def download(self, mxc: str) -> bytes:
        response = await self.client.download(mxc=mxc)
        body: bytes = getattr(response, "body", b"")
        return body

    async def file_data(self, content: dict[str, Any]) -> bytes:
        """The bytes of an m.file or m.image, decrypted when it came encrypted."""
        encrypted = content.get("file")
        if encrypted is None:
            return await self.download(content["url"])
        data = await self.download(encrypted["url"])
        plain: bytes = decrypt_attachment(
            data, encrypted["key"]["k"], encrypted["hashes"]["sha256"], encrypted["iv"]
        )
        return plain

    async def send_file(
        self, room_id: str, filename: str, data: bytes, mimetype: str, encrypt: bool = False
    ) -> str:
        """Upload C{data} (encrypted for an encrypted room) and post it as an m.file."""
        response, keys = await self.client.upload(
            lambda *_: data, mimetype, filename=filename, encrypt=encrypt, filesize=len(data)
        )
        assert isinstance(response, UploadResponse), response
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "info": {"mimetype": mimetype, "size": len(data)},
        }
        if encrypt:
            content["file"] = {"url": response.content_uri, **(keys or {})}
        else:
            content["url"] = response.content_uri
        sent = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(sent, RoomSendResponse), sent
        event_id: str = sent.event_id
        return event_id

    async def upload(self, data: bytes) -> str:
        response, _ = await self.client.upload(lambda *_: data, "text/plain")
        assert isinstance(response, UploadResponse)
        uri: str = response.content_uri
        return uri

    # -- waiting --------------------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[str, Event], bool], within: float = 30.0
    ) -> tuple[str, Event]:
        """The first event (seen before or after the call) for which C{predicate} holds."""

        def found() -> tuple[str, Event] | None:
            return next(((r, e) for r, e in self.events if predicate(r, e)), None)

        async def wait() -> tuple[str, Event]:
            async with self._changed:
                while (hit := found()) is None:
                    await self._changed.wait()
                return hit

        try:
            return await asyncio.wait_for(wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.user_id} did not see the expected event within {within}s; saw:\n"
                + "\n".join(f"{r} {e.get('type')} {e.get('content')}" for r, e in self.events[-30:])
            ) from None

    async def wait_until(self, check: Callable[[], Any], within: float = 30.0) -> Any:
        """Wait until C{check()} returns something truthy after some event arrived."""

        async def wait() -> Any:
            async with self._changed:
                while not (result := check()):
                    await self._changed.wait()
                return result

        try:
            return await asyncio.wait_for(wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"condition not met within {within}s; {self.user_id} saw:\n"
                + "\n".join(f"{r} {e.get('type')} {e.get('content')}" for r, e in self.events[-30:])
            ) from None

    def replies_to(self, room_id: str, event_id: str) -> list[Event]:
        """The events in C{room_id} that reply to C{event_id}, edits applied, oldest first."""
        replies = []
        for room, event in self.events:
            content = event.get("content", {})
            relation = content.get("m.relates_to", {})
            if room == room_id and relation.get("m.in_reply_to", {}).get("event_id") == event_id:
                replies.append(self.latest(room_id, event))
        return replies

    def latest(self, room_id: str, event: Event) -> Event:
        """C{event} with its content replaced by its latest m.replace edit, if any."""
        content = event.get("content", {})
        for room, other in self.events:
            relation = other.get("content", {}).get("m.relates_to", {})
            if (
                room == room_id
                and relation.get("rel_type") == "m.replace"
                and relation.get("event_id") == event["event_id"]
                and other.get("sender") == event.get("sender")
            ):
                content = other["content"]["m.new_content"]
        return {**event, "content": content}

    def edits_of(self, room_id: str, event_id: str) -> list[Event]:
        return [
            e
            for room, e in self.events
            if room == room_id
            and e.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"
            and e["content"]["m.relates_to"].get("event_id") == event_id
        ]

    async def answer(
        self, room_id: str, command_id: str, contains: str, within: float = 30.0
    ) -> Event:
        """The bot's reply to C{command_id} once its (edited) body contains C{contains}."""

        def check() -> Event | None:
            return next(
                (
                    r
                    for r in self.replies_to(room_id, command_id)
                    if contains in r["content"].get("body", "")
                ),
                None,
            )

        result: Event = await self.wait_until(check, within)
        return result

    def joined(self, room_id: str, user_id: str) -> bool:
        return any(
            room == room_id
            and e.get("type") == "m.room.member"
            and e.get("state_key") == user_id
            and e.get("content", {}).get("membership") == "join"
            for room, e in self.events
        )
