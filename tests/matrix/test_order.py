"""The Matrix adapter hands a room's commands on in sending order (origin_server_ts), whatever
order the timeline of a sync lists them in (two people's events racing through federation or a
gap read back after a restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from nio import AsyncClient, Event, RoomMessageText

from jupybot.commands import AccessPolicy, ChatCommands, IncomingMessage
from jupybot.matrix.api import MatrixApi
from jupybot.matrix.bot import MatrixBot
from jupybot.matrix.session import SyncFile

ROOM = "!room:example.org"


class _Client:
    user_id = "@bot:example.org"
    rooms: dict[str, Any] = {}


class _Commands:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def handle(self, message: IncomingMessage) -> None:
        self.texts.append(message.text)


def _message(body: str, sent_at: int, sender: str = "@alice:example.org") -> Event:
    event = RoomMessageText.from_dict(
        {
            "type": "m.room.message",
            "event_id": f"${body}",
            "sender": sender,
            "origin_server_ts": sent_at,
            "content": {"msgtype": "m.text", "body": body},
        }
    )
    assert isinstance(event, RoomMessageText)
    return event


def test_a_rooms_commands_go_on_in_the_order_they_were_sent(tmp_path: Path) -> None:
    commands = _Commands()
    bot = MatrixBot(
        cast(AsyncClient, _Client()),
        cast(MatrixApi, None),
        cast(ChatCommands, commands),
        AccessPolicy.build(["*"], [], []),
        SyncFile(tmp_path / "sync.json"),
        encryption=False,
    )
    bot.state.joined[ROOM] = 1_000
    timeline = [
        _message("!bot run a = 1", 2_000),
        _message("!bot run print(a)", 2_002, sender="@bob:example.org"),
        _message("!bot run b = 2", 2_001, sender="@bob:example.org"),
        _message("!bot run early", 500),  # before the bot joined: never run
    ]
    bot._handle_room(ROOM, timeline)
    assert commands.texts == ["!bot run a = 1", "!bot run b = 2", "!bot run print(a)"]
