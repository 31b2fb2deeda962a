"""The notices about messages the bot could not decrypt, and those run when their key comes
late, on a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from nio import AsyncClient, EncryptionError, Event, MegolmEvent, RoomMessageText
from twisted.internet.task import Clock

from jupybot.commands import AccessPolicy, ChatCommands, IncomingMessage
from jupybot.matrix.api import MatrixApi
from jupybot.matrix.bot import MatrixBot
from jupybot.matrix.session import SyncFile
from jupybot.matrix.undecryptable import KEY_WAIT_SECONDS, UndecryptableNotices, Withheld

from .user import asyncio_test

ROOM = "!room:example.org"


def test_a_withheld_key_is_explained_with_its_code_and_what_to_do() -> None:
    notices = UndecryptableNotices(Clock())
    withheld = Withheld.from_content(
        {
            "room_id": "!r:x",
            "session_id": "s1",
            "code": "m.unverified",
            "reason": "The sender has disabled encrypting to unverified devices.",
        }
    )
    assert withheld is not None
    notices.withheld(withheld)
    text = notices.failed("!r:x", "@alice:x", "s1")
    assert text is not None
    assert "@alice:x" in text
    assert "this room's key was withheld from me (m.unverified: The sender has" in text
    assert "matrix.cross_signing" in text


def test_a_missing_key_says_it_was_asked_for() -> None:
    text = UndecryptableNotices(Clock()).failed("!r:x", "@alice:x", "unknown")
    assert text is not None
    assert "has not reached my device. I asked for it, and will run the message if it" in text


def test_at_most_one_notice_a_minute_per_room() -> None:
    clock = Clock()
    notices = UndecryptableNotices(clock)
    assert notices.failed("!a:x", "@alice:x", "s") is not None
    assert notices.failed("!a:x", "@alice:x", "s") is None
    assert notices.failed("!b:x", "@alice:x", "s") is not None
    clock.advance(59)
    assert notices.failed("!a:x", "@alice:x", "s") is None
    clock.advance(1)
    assert notices.failed("!a:x", "@alice:x", "s") is not None


def test_a_withheld_event_without_a_code_is_ignored() -> None:
    assert Withheld.from_content({"session_id": "s"}) is None


class _Client:
    user_id = "@bot:example.org"
    rooms: dict[str, Any] = {}
    outgoing_key_requests: dict[str, Any] = {}
    access_token = "token"

    def __init__(self) -> None:
        self.keys: set[str] = set()

    async def request_room_key(self, event: MegolmEvent) -> None:
        pass

    async def _send(self, *request: object) -> None:
        pass

    def decrypt_event(self, event: MegolmEvent) -> Event:
        if event.session_id not in self.keys:
            raise EncryptionError("no session")
        decrypted = RoomMessageText.from_dict(
            {
                "type": "m.room.message",
                "event_id": event.event_id,
                "sender": event.sender,
                "origin_server_ts": event.server_timestamp,
                "content": {"msgtype": "m.text", "body": f"!bot run {event.session_id}"},
            }
        )
        assert isinstance(decrypted, RoomMessageText)
        return decrypted


class _Api:
    def __init__(self) -> None:
        self.clock = Clock()
        self.calls: list[str] = []

    async def retrying(self, what: str, call: object, paced: bool = False) -> None:
        self.calls.append(what)


class _Commands:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def handle(self, message: IncomingMessage) -> None:
        self.texts.append(message.text)


def _encrypted(session_id: str, sent_at: int) -> MegolmEvent:
    event = MegolmEvent.from_dict(
        {
            "type": "m.room.encrypted",
            "event_id": f"${session_id}",
            "sender": "@alice:example.org",
            "origin_server_ts": sent_at,
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgA",
                "sender_key": "curve",
                "session_id": session_id,
                "device_id": "ALICE",
            },
        }
    )
    assert isinstance(event, MegolmEvent)
    return event


@asyncio_test
async def test_a_message_whose_key_comes_late_runs_then(tmp_path: Path) -> None:
    """A key that comes after its message (within 10 minutes) runs it after all; the room was
    told at once, and the key asked for."""
    client, api, commands = _Client(), _Api(), _Commands()
    bot = MatrixBot(
        cast(AsyncClient, client),
        cast(MatrixApi, api),
        cast(ChatCommands, commands),
        AccessPolicy.build(["*"], [], []),
        SyncFile(tmp_path / "sync.json"),
        encryption=True,
    )
    bot.state.joined[ROOM] = 1_000
    bot._handle_room(ROOM, [_encrypted("late", 2_000), _encrypted("lost", 2_001)])
    await bot.encrypted.tell_undecryptable()
    assert api.calls.count("requesting a room key") == 2
    assert api.calls.count(f"telling {ROOM}") == 1  # once a minute per room
    bot.encrypted.run_late_decrypted()
    assert commands.texts == []
    client.keys.add("late")
    api.clock.advance(KEY_WAIT_SECONDS - 1)
    bot.encrypted.run_late_decrypted()
    assert commands.texts == ["!bot run late"]
    api.clock.advance(2)
    bot.encrypted.run_late_decrypted()
    client.keys.add("lost")
    bot.encrypted.run_late_decrypted()
    assert commands.texts == ["!bot run late"]


@asyncio_test
async def test_only_the_bots_users_hear_of_a_message_it_could_not_decrypt(tmp_path: Path) -> None:
    api = _Api()
    bot = MatrixBot(
        cast(AsyncClient, _Client()),
        cast(MatrixApi, api),
        cast(ChatCommands, _Commands()),
        AccessPolicy.build(["@bob:example.org"], [], []),
        SyncFile(tmp_path / "sync.json"),
        encryption=True,
    )
    bot.state.joined[ROOM] = 1_000
    bot._handle_room(ROOM, [_encrypted("chatter", 2_000)])  # from @alice, not allowed
    await bot.encrypted.tell_undecryptable()
    assert api.calls == []
