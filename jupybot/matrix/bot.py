"""Reading the Matrix sync stream: invites, commands, encrypted rooms, and the sync token.

Everything in one sync response is handled before its token is saved: a restart then resumes
exactly after the last handled event (nothing re-run, nothing missed). A room's events are
handed on in the order they were sent (C{origin_server_ts}); events from before the bot joined
a room are never acted on. Edits of a message (C{m.replace}) and 🔁 reactions go to the command
layer too, which decides whether they run anything again. What encryption asks of each sync
(keys, messages that could not be decrypted, verification) is L{EncryptionUpkeep}'s.
"""

from __future__ import annotations

import functools
from typing import Any

from nio import (
    AsyncClient,
    InviteMemberEvent,
    MegolmEvent,
    MessageDirection,
    ReactionEvent,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    SyncResponse,
)
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ..aio import await_deferred
from ..commands import (
    AccessPolicy,
    ChatCommands,
    Conversation,
    IncomingAttachment,
    IncomingMessage,
    IncomingReaction,
    Reply,
)
from ._encryption import EncryptionUpkeep
from .api import MatrixApi, MatrixError
from .content import notice_content, strip_reply_fallback
from .conversation import MatrixConversation
from .files import RoomFiles
from .session import SyncFile
from .verification import verification_kind

__all__ = ["SYNC_FILTER", "MatrixBot"]

# Enough timeline per room and sync that a busy room rarely has a gap; gaps are filled anyway.
SYNC_FILTER: dict[str, Any] = {
    "room": {"timeline": {"limit": 100}},
    "presence": {"types": []},
}
_INITIAL_FILTER: dict[str, Any] = {
    "room": {"timeline": {"limit": 1}},
    "presence": {"types": []},
}
_GAP_PAGES = 10
_ROOM_SYNC_TIMEOUT = 60.0


class MatrixBot:
    """Turns sync responses into command-layer calls; owns the persisted sync state."""

    log = Logger()

    def __init__(
        self,
        client: AsyncClient,
        api: MatrixApi,
        commands: ChatCommands,
        access: AccessPolicy,
        sync_file: SyncFile,
        encryption: bool,
    ) -> None:
        self.client = client
        self.api = api
        self.commands = commands
        self.access = access
        self.encryption = encryption
        self._sync_file = sync_file
        self.state = sync_file.load()
        self._direct_rooms: dict[str, str] = {}
        self._declined: set[str] = set()
        self._awaiting_rooms: dict[str, Deferred[None]] = {}
        # Keys, messages it could not decrypt, verification: after each sync (_encryption.py).
        self.encrypted = EncryptionUpkeep(client, api, access.is_allowed, self._handle_room)
        # Files that commands of this sync reply to (files.py), by the command's event id.
        self._files = RoomFiles(client, api)
        self._attachments: dict[str, tuple[IncomingAttachment, ...]] = {}

    @property
    def user_id(self) -> str:
        user_id: str = self.client.user_id
        return user_id

    def _save(self) -> None:
        self._sync_file.save(self.state)

    # -- rooms --------------------------------------------------------------------------------

    def is_encrypted(self, room_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return bool(room is not None and room.encrypted and self.encryption)

    def is_direct(self, room_id: str) -> bool:
        """A direct chat: invited as one (or opened by the bot), and still just two people."""
        if room_id not in self.state.direct:
            return False
        room = self.client.rooms.get(room_id)
        return room is None or len(room.users) <= 2

    def conversation(self, room_id: str, is_direct: bool | None = None) -> MatrixConversation:
        """Room C{room_id} as the command layer's conversation; its directness as it is now
        unless C{is_direct} says it."""
        return MatrixConversation(
            self.api,
            room_id,
            self.is_direct(room_id) if is_direct is None else is_direct,
            is_encrypted=self.is_encrypted,
            open_direct=self.direct_conversation,
        )

    def find_conversation(self, key: str) -> Deferred[Conversation | None]:
        """The room a conversation key names, if the bot is still in it (for recovery)."""
        prefix, _, room_id = key.partition(":")
        known = prefix == "matrix" and room_id in self.state.joined
        return succeed(self.conversation(room_id) if known else None)

    async def recover(self) -> None:
        """Tell the replies a crash left running that their result is unknown (after the first
        sync, when the bot knows its rooms)."""
        await await_deferred(self.commands.recover(self.find_conversation))

    async def direct_conversation(self, user_id: str) -> Conversation:
        """The direct chat with C{user_id}: an existing two-person room, else a new one."""
        known = self._direct_rooms.get(user_id)
        if known is not None:
            return self.conversation(known, is_direct=True)
        for room_id, room in self.client.rooms.items():
            if self.is_direct(room_id) and set(room.users) == {self.user_id, user_id}:
                self._direct_rooms[user_id] = room_id
                return self.conversation(room_id, is_direct=True)
        room_id = await self.api.create_direct_room(user_id, encrypted=self.encryption)
        # The bot made the room: nothing in it predates the bot.
        self.state.joined[room_id] = 0
        self.state.direct.append(room_id)
        self._save()
        if self.encryption and room_id not in self.client.rooms:
            # Encrypting needs the room's members, which nio learns from the next sync.
            seen: Deferred[None] = Deferred()
            self._awaiting_rooms[room_id] = seen
            seen.addTimeout(_ROOM_SYNC_TIMEOUT, self.api.clock)
            await await_deferred(seen)
        self._direct_rooms[user_id] = room_id
        self.log.info("matrix: opened a direct chat {room} with {user}", room=room_id, user=user_id)
        return self.conversation(room_id, is_direct=True)

    # -- syncing --------------------------------------------------------------------------------

    async def initial_sync(self) -> None:
        """The very first sync of this bot account: note the rooms, run nothing from before."""
        response = await self.api.sync(None, 0, _INITIAL_FILTER)
        for room_id in response.rooms.join:
            self.state.joined.setdefault(room_id, 0)
        await self._handle_invites(response)
        self.state.next_batch = response.next_batch
        self._save()
        self.log.info(
            "matrix: first sync; {count} room(s) joined before now are not replayed",
            count=len(response.rooms.join),
        )

    async def sync_once(self, timeout_ms: int, full_state: bool = False) -> None:
        since = self.state.next_batch
        response = await self.api.sync(since, timeout_ms, SYNC_FILTER, full_state=full_state)
        await self.handle_sync(response, since)

    async def handle_sync(self, response: SyncResponse, since: str | None) -> None:
        if self.encryption:
            await self.encrypted.maintain_keys()
        self.encrypted.note_withheld_keys(response)
        self.encrypted.run_late_decrypted()
        await self._handle_invites(response)
        for room_id, info in response.rooms.join.items():
            if room_id not in self.state.joined:
                # The room state is as of the timeline's start: a join there came before it
                # (in a gap of the timeline, or before a restart).
                self._own_membership_in(room_id, list(info.state))
            events = list(info.timeline.events)
            if info.timeline.limited and since is not None and room_id in self.state.joined:
                try:
                    missed = await self._missed_events(room_id, info.timeline.prev_batch, since)
                except MatrixError as e:
                    self.log.warn("matrix: could not read missed events: {error}", error=str(e))
                else:
                    events = missed + events
            self._attachments = await self._files.for_commands(room_id, events, self._wants_file)
            self._handle_room(room_id, events)
            self._attachments = {}
        for room_id in response.rooms.join:
            waiting = self._awaiting_rooms.pop(room_id, None)
            if waiting is not None and not waiting.called:
                waiting.callback(None)
        for room_id in response.rooms.leave:
            self.state.joined.pop(room_id, None)
            if room_id in self.state.direct:
                self.state.direct.remove(room_id)
        await self._tell_encrypted_rooms()
        await self.encrypted.tell_undecryptable()
        await self.encrypted.answer_verifications()
        self.state.next_batch = response.next_batch
        self._save()

    async def _missed_events(self, room_id: str, start: str | None, since: str) -> list[Any]:
        """Events of a limited timeline's gap, oldest first (the bot was down for a while)."""
        found: list[Any] = []
        token = start
        for _ in range(_GAP_PAGES):
            if token is None:
                break
            response = await self.api.retrying(
                f"reading missed events in {room_id}",
                functools.partial(
                    self.client.room_messages,
                    room_id,
                    start=token,
                    end=since,
                    direction=MessageDirection.back,
                    limit=100,
                ),
            )
            if not isinstance(response, RoomMessagesResponse) or not response.chunk:
                break
            found.extend(response.chunk)
            if response.end is None or response.end == token:
                break
            token = response.end
        found.reverse()
        self.log.info(
            "matrix: read {count} missed event(s) in {room}", count=len(found), room=room_id
        )
        return found

    def _own_membership_in(self, room_id: str, state: list[Any]) -> None:
        for event in state:
            if isinstance(event, RoomMemberEvent) and event.state_key == self.user_id:
                self._own_membership(room_id, event)

    def _handle_room(self, room_id: str, events: list[Any]) -> None:
        # Timeline order is the order the server received events; people expect commands to
        # run in the order they sent them, which is what origin_server_ts says.
        events = sorted(events, key=lambda e: getattr(e, "server_timestamp", 0) or 0)
        for event in events:
            if isinstance(event, RoomMemberEvent) and event.state_key == self.user_id:
                self._own_membership(room_id, event)
                continue
            joined_at = self.state.joined.get(room_id)
            if joined_at is None or event.server_timestamp < joined_at:
                continue  # from before the bot joined
            if isinstance(event, RoomMessageText):
                self._dispatch(room_id, event)
            elif isinstance(event, ReactionEvent):
                self._dispatch_reaction(room_id, event)
            elif isinstance(event, MegolmEvent) and event.sender != self.user_id:
                self.log.warn(
                    "matrix: cannot decrypt an event from {sender} in {room}",
                    sender=event.sender,
                    room=room_id,
                )
                # Without encryption, the room was told once that the bot cannot read it; and
                # only the bot's users hear about it (anyone else's message would not run).
                if self.encryption and self.access.is_allowed(event.sender):
                    self.encrypted.cannot_decrypt(room_id, event)
            elif self.encryption and verification_kind(event.source) is not None:
                self.encrypted.verification_event(room_id, event.source)

    def _wants_file(self, room_id: str, sender: str, body: str) -> int | None:
        """For a reply that takes the file it replies to (`run` a notebook, `put`) from someone
        allowed to use that command: the most bytes it takes; None: not downloaded."""
        if sender == self.user_id:
            return None
        direct = self.is_direct(room_id)
        wanted = self.commands.file_limit(strip_reply_fallback(body), direct)
        if wanted is None or self.access.refusal(sender, wanted[0], direct) is not None:
            return None
        return wanted[1]

    def _own_membership(self, room_id: str, event: RoomMemberEvent) -> None:
        if event.membership == "join":
            # Later join events are profile changes; the first one is when the bot arrived.
            self.state.joined.setdefault(room_id, event.server_timestamp)
        elif event.membership in ("leave", "ban"):
            self.state.joined.pop(room_id, None)

    def _dispatch(self, room_id: str, event: RoomMessageText) -> None:
        if event.sender == self.user_id:
            return
        content = event.source.get("content") or {}
        relation = content.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace":
            self._dispatch_edit(room_id, event, relation, content.get("m.new_content"))
            return
        in_reply_to = (relation.get("m.in_reply_to") or {}).get("event_id")
        text = strip_reply_fallback(event.body) if in_reply_to else event.body
        message = IncomingMessage(
            message_id=event.event_id,
            sender=event.sender,
            text=text,
            conversation=self.conversation(room_id),
            in_reply_to=in_reply_to,
            attachments=self._attachments.get(event.event_id, ()),
        )
        self.commands.handle(message)

    def _dispatch_edit(
        self, room_id: str, event: RoomMessageText, relation: dict[str, Any], new: Any
    ) -> None:
        """An edit: the new text (not the "* " fallback) of the message it replaces."""
        edited = relation.get("event_id")
        if not isinstance(edited, str) or not isinstance(new, dict):
            return
        body = new.get("body")
        if not isinstance(body, str):
            return
        self.commands.handle(
            IncomingMessage(
                message_id=event.event_id,
                sender=event.sender,
                text=body,
                conversation=self.conversation(room_id),
                edit_of=edited,
            )
        )

    def _dispatch_reaction(self, room_id: str, event: ReactionEvent) -> None:
        if event.sender == self.user_id:
            return
        self.commands.handle_reaction(
            IncomingReaction(
                message_id=event.reacts_to,
                sender=event.sender,
                key=event.key,
                conversation=self.conversation(room_id),
            )
        )

    # -- invites and encrypted rooms ----------------------------------------------------------

    async def _handle_invites(self, response: SyncResponse) -> None:
        for room_id, info in response.rooms.invite.items():
            if room_id in self._declined:
                continue
            invite = next(
                (
                    e
                    for e in info.invite_state
                    if isinstance(e, InviteMemberEvent)
                    and e.state_key == self.user_id
                    and e.membership == "invite"
                ),
                None,
            )
            inviter = invite.sender if invite is not None else None
            try:
                if invite is not None and self.access.is_allowed(invite.sender):
                    await self.api.join(room_id)
                    if invite.content.get("is_direct") and room_id not in self.state.direct:
                        self.state.direct.append(room_id)
                    self.log.info(
                        "matrix: joined {room}, invited by {user}", room=room_id, user=inviter
                    )
                else:
                    self._declined.add(room_id)
                    await self.api.leave(room_id)
                    self.log.info(
                        "matrix: declined an invite to {room} from {user} (not allowed)",
                        room=room_id,
                        user=inviter,
                    )
            except MatrixError as e:
                self.log.warn("matrix: could not answer an invite: {error}", error=str(e))

    async def _tell_encrypted_rooms(self) -> None:
        if self.encryption:
            return
        for room_id in list(self.state.joined):
            room = self.client.rooms.get(room_id)
            if room is None or not room.encrypted or room_id in self.state.told_encrypted:
                continue
            self.state.told_encrypted.append(room_id)
            try:
                await self.api.send(room_id, "m.room.message", notice_content(_CANNOT_DECRYPT))
            except MatrixError as e:
                self.log.warn(
                    "matrix: could not post in {room}: {error}", room=room_id, error=str(e)
                )


_CANNOT_DECRYPT = Reply.text(
    "🔒 This room is end-to-end encrypted, and I was started without encryption support, so I "
    "cannot read the messages here. My operator can turn it on with 'matrix.encryption: true' in "
    "jupybot's config.yml; until then, talk to me in an unencrypted room."
)
