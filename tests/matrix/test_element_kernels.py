"""An encrypted private room on Element (matrix-js-sdk's Rust crypto, excluding insecure devices)
with the bot and a real Kernel Gateway: code, a plot, input() and an edit that runs again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jupybot.kernels import KernelManager
from jupybot.rendering import render_outputs
from tests.peers.element_client import ElementClient, Event

from .conftest import BotRunner
from .user import asyncio_test

pytestmark = pytest.mark.peers

_PLOT = (
    "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
)


@pytest.fixture
def kernels(gateway_kernels: KernelManager) -> KernelManager:
    return gateway_kernels


@asyncio_test
async def test_code_a_plot_input_and_an_edit_in_an_encrypted_private_room(
    bot: BotRunner, element: ElementClient
) -> None:
    bot.render = render_outputs
    await bot.start(encryption=True)
    me = bot.user_id

    def call(op: str, **arguments: Any) -> asyncio.Future[Event]:
        return asyncio.ensure_future(asyncio.to_thread(element.call, op, **arguments))

    room = str((await call("create_room", invite=[me]))["room_id"])
    await asyncio.to_thread(element.wait_joined, room, me)

    run_id = (await call("send", room_id=room, body="!bot run print('hello')\n6 * 7"))["event_id"]
    answer = await asyncio.to_thread(element.answer, room, me, "✅ done", run_id)
    assert "hello\n42" in answer["content"]["body"]
    assert answer["encrypted"] and answer["failure"] is None

    plot_id = (await call("send", room_id=room, body=f"!bot run\n```\n{_PLOT}\n```"))["event_id"]
    image = await asyncio.to_thread(
        element.wait_for,
        lambda e: (
            e.get("event") == "message"
            and e["room_id"] == room
            and e["content"].get("msgtype") == "m.image"
        ),
        60,
    )
    assert image["encrypted"] and image["failure"] is None
    assert image["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == plot_id
    assert image["content"]["info"]["w"] > 100
    shown = await call("image", content=image["content"])
    assert shown["head"] == "89504e470d0a1a0a"

    ask_id = (await call("send", room_id=room, body="!bot run print('hi', input('name? '))"))[
        "event_id"
    ]
    await asyncio.to_thread(element.answer, room, me, "name?", ask_id)
    await call("send", room_id=room, body="Ada")
    greeted = await asyncio.to_thread(element.answer, room, me, "✅ done", ask_id)
    assert "hi Ada" in greeted["content"]["body"]

    # Element's edit of the command runs the new code, in the same reply.
    edit_id = (await call("send", room_id=room, body="!bot run 6 * 7"))["event_id"]
    await asyncio.to_thread(element.answer, room, me, "42", edit_id)
    await call("edit", room_id=room, event_id=edit_id, body="!bot run 6 * 8")
    again = await asyncio.to_thread(element.answer, room, me, "48", edit_id)
    assert again["encrypted"] and again["failure"] is None
