"""Who may start an emoji verification of the bot, and what it answers (the whole exchange
with Element's own crypto: test_element.py)."""

from __future__ import annotations

from typing import Any

from jupybot.matrix.verification import InRoomVerifier, spec_emoji, verification_kind

from .user import asyncio_test

ROOM = "!room:example.org"


class _Bot:
    user_id = "@bot:example.org"
    device_id = "BOTDEVICE"
    device_key = "key"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def master_key(self) -> str | None:
        return None

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        self.sent.append((event_type, content))

    def allowed(self, user_id: str) -> bool:
        return user_id == "@alice:example.org"


def _request(sender: str, to: str = "@bot:example.org") -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"$request-{sender}",
        "sender": sender,
        "content": {
            "msgtype": "m.key.verification.request",
            "from_device": "PHONE",
            "methods": ["m.sas.v1", "m.qr_code.show.v1"],
            "to": to,
        },
    }


def test_verification_events_are_told_apart() -> None:
    assert verification_kind(_request("@alice:example.org")) == "request"
    assert verification_kind({"type": "m.key.verification.start", "content": {}}) == "start"
    assert verification_kind({"type": "m.room.message", "content": {"msgtype": "m.text"}}) is None


@asyncio_test
async def test_an_allowed_user_gets_ready_and_anyone_else_a_cancel() -> None:
    bot = _Bot()
    verifier = InRoomVerifier(bot)
    await verifier.handle(ROOM, _request("@alice:example.org"))
    await verifier.handle(ROOM, _request("@mallory:example.org"))
    await verifier.handle(ROOM, _request("@alice:example.org", to="@someone:example.org"))
    (ready_type, ready), (cancel_type, cancel) = bot.sent
    assert ready_type == "m.key.verification.ready"
    assert ready["methods"] == ["m.sas.v1"] and ready["from_device"] == "BOTDEVICE"
    assert ready["m.relates_to"] == {
        "rel_type": "m.reference",
        "event_id": "$request-@alice:example.org",
    }
    assert cancel_type == "m.key.verification.cancel" and cancel["code"] == "m.user"


def test_emoji_are_named_as_the_spec_names_them() -> None:
    # Element (matrix-sdk-crypto) shows the spec's names: the person compares words too.
    names = {spec_emoji(i)[1] for i in range(64)}
    assert {"Spanner", "Thumbs Up", "Aeroplane"} <= names
    assert not {"Wrench", "Thumbs up", "Airplane"} & names
